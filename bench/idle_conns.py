#!/usr/bin/env python3
"""Idle keep-alive connections (issue 13): the gateway's resident memory at N
open connections. Brings up member, auth and the gateway
(tests/e2e/sbplatform.py), opens N connections, sends one GET /healthz on
each and keeps them all open, then reads the gateway's VmRSS and thread
count from /proc; finally sends a second request on every connection (all
must still be served). Prints a markdown table.

    eval "$(deploy/local/infra.sh up)"; export DATABASE_URL REDIS_URL KAFKA_BROKERS
    python3 bench/idle_conns.py [connections=10000]
"""
import os
import resource
import socket
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from sbplatform import GATEWAY_PORT, Platform  # noqa: E402

REQ = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"


def status(pid):
    """VmRSS and VmHWM in KiB and the thread count of process pid."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
    return out


def ask(s):
    """Sends one /healthz on s and reads its whole answer; True on a 200."""
    s.sendall(REQ)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            return False
        body += chunk
    return head.startswith(b"HTTP/1.1 200")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < n + 64:
        raise SystemExit(f"the open-file limit {hard} is below {n} connections")
    with Platform(["member", "auth"], env={"LOG_LEVEL": "warn", "GATEWAY_IDLE_TIMEOUT_S": "600"}) as p:
        pid = p.proc("gateway").pid
        for _ in range(100):  # warm: the first requests' allocations
            s = socket.create_connection(("127.0.0.1", GATEWAY_PORT))
            ask(s)
            s.close()
        time.sleep(0.5)
        before = status(pid)
        conns, failed = [], 0
        t0 = time.time()
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", GATEWAY_PORT), timeout=30)
            conns.append(s)
            failed += not ask(s)
        opened_s = time.time() - t0
        time.sleep(1)
        held = status(pid)
        again = sum(ask(s) for s in conns)
        after = status(pid)
        for s in conns:
            s.close()
    per_conn = (held["VmRSS"] - before["VmRSS"]) / n
    print(f"| gateway, {n:,} idle keep-alive connections | value |")
    print("| --- | ---: |")
    print(f"| VmRSS before (100 requests served, no connection open) | {before['VmRSS'] / 1024:.1f} MiB |")
    print(f"| VmRSS with {n:,} connections open, each served once | {held['VmRSS'] / 1024:.1f} MiB |")
    print(f"| per connection | {per_conn:.1f} KiB |")
    print(f"| VmRSS after a second request on each | {after['VmRSS'] / 1024:.1f} MiB |")
    print(f"| threads (before / with the connections) | {before['Threads']} / {held['Threads']} |")
    print(f"| first requests failed | {failed} |")
    print(f"| second requests answered 200 on the kept connections | {again:,} of {n:,} |")
    print(f"| time to open and serve {n:,} connections | {opened_s:.1f} s |")
    if failed or again != n:
        raise SystemExit("not every connection was served")


if __name__ == "__main__":
    main()
