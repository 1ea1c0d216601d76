#!/usr/bin/env python3
"""The resident memory of an HTTP server holding N idle keep-alive
connections: opens N connections to HOST:PORT, sends one request on each
(GET PATH, HTTP/1.1 keep-alive) and reads its whole answer, then, with every
connection still open and idle, reads VmRSS (and the thread count) of PID
from /proc/PID/status; then closes them. Prints one JSON line:

    {"connections": 10000, "answered": 10000, "failed": 0, "rss_before_kb": ...,
     "rss_idle_kb": ..., "rss_per_conn_kb": ..., "threads_idle": ..., "seconds_to_open": ...}

    python3 bench/idle_rss.py --pid PID --port 18080 [--host 127.0.0.1] [--conns 10000]
        [--path /healthz] [--hold 2]

Raises its own RLIMIT_NOFILE to the hard limit (the server needs N + a few
descriptors of its own: start it with a limit that high). One thread,
non-blocking sockets and a selector; connections are opened in batches of
--batch so the listen backlog is not overrun. Used by bench/gateway_compare.py
(docs/benchmarks.md); a benchmark tool, not a test."""
import argparse
import json
import resource
import selectors
import socket
import sys
import time


def status(pid):
    """(VmRSS kB, Threads) of pid."""
    rss = threads = -1
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


def answered(buf):
    """True once buf holds a whole HTTP response (headers + Content-Length body)."""
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return len(body) >= int(v.strip())
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--path", default="/healthz")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--hold", type=float, default=2.0, help="seconds idle before reading VmRSS")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.conns + 64:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is below {args.conns} connections")

    rss_before, threads_before = status(args.pid)
    req = f"GET {args.path} HTTP/1.1\r\nHost: {args.host}\r\nConnection: keep-alive\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    socks, ok, failed = [], 0, 0
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    for start in range(0, args.conns, args.batch):
        pending = {}
        for _ in range(min(args.batch, args.conns - start)):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((args.host, args.port))
            socks.append(s)
            pending[s] = {"sent": False, "buf": b""}
            sel.register(s, selectors.EVENT_WRITE)
        while pending and time.monotonic() < deadline:
            for key, ev in sel.select(timeout=1.0):
                s, st = key.fileobj, pending.get(key.fileobj)
                if st is None:
                    continue
                try:
                    if not st["sent"]:
                        s.send(req)
                        st["sent"] = True
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    chunk = s.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    failed += 1
                    sel.unregister(s)
                    del pending[s]
                    continue
                st["buf"] += chunk
                if answered(st["buf"]):
                    ok += 1
                    sel.unregister(s)
                    del pending[s]
        for s in pending:
            failed += 1
            sel.unregister(s)
    opened = time.monotonic() - t0
    time.sleep(args.hold)
    rss_idle, threads_idle = status(args.pid)
    # still open? a server that closed them would have made them readable (EOF)
    still = 0
    for s in socks:
        try:
            still += s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            still += 1
        except OSError:
            pass
    for s in socks:
        s.close()
    print(json.dumps({"connections": args.conns, "answered": ok, "failed": failed, "open_at_read": still,
                      "rss_before_kb": rss_before, "rss_idle_kb": rss_idle,
                      "rss_per_conn_kb": round((rss_idle - rss_before) / max(ok, 1), 2),
                      "threads_before": threads_before, "threads_idle": threads_idle,
                      "seconds_to_open": round(opened, 2)}))
    return 0 if ok == args.conns else 1


if __name__ == "__main__":
    sys.exit(main())
