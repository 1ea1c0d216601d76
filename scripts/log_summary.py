#!/usr/bin/env python3
"""make run's terminal view of the logs (scripts/run.sh): every line read
on stdin (`tail -F` of the processes' log files) is printed as it is,
except the access lines ({"msg":"access",...}: one per request, from the
gateway and sb-paysim), which are counted instead; every SUMMARY_S seconds
(default 5) one line per process that served requests:

  [access 12:00:05] gateway 412.6 req/s (2063 in 5.0 s) 2xx 2050 4xx 13 5xx 0, p50 3.1 ms p99 18.4 ms

The full logs stay in their files (.cache/run/logs/*.log).

    tail -n 0 -qF .cache/run/logs/*.log | python3 scripts/log_summary.py [seconds]"""
import json
import os
import select
import sys
import time


def pct(sorted_ms, p):
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * p))]


def summary(window, took):
    out = []
    for svc in sorted(window):
        ms = sorted(window[svc]["ms"])
        st = window[svc]["status"]
        classes = " ".join(f"{c}xx {sum(n for s, n in st.items() if s // 100 == c)}" for c in (2, 3, 4, 5)
                           if c != 3 or any(s // 100 == 3 for s in st))
        out.append(f"[access {time.strftime('%H:%M:%S')}] {svc} {len(ms) / took:.1f} req/s ({len(ms)} in "
                   f"{took:.1f} s) {classes}, p50 {pct(ms, 0.5):.1f} ms p99 {pct(ms, 0.99):.1f} ms")
    return out


def main():
    every = float(sys.argv[1]) if len(sys.argv) > 1 else float(os.environ.get("SUMMARY_S", "5"))
    fd = sys.stdin.fileno()
    pending = b""
    window, started = {}, time.monotonic()
    while True:
        left = started + every - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                try:
                    rec = json.loads(line) if line.startswith("{") else None
                except ValueError:
                    rec = None
                if isinstance(rec, dict) and rec.get("msg") == "access" and "status" in rec:
                    w = window.setdefault(rec.get("svc", "?"), {"ms": [], "status": {}})
                    w["ms"].append(float(rec.get("ms", 0)))
                    s = int(rec["status"])
                    w["status"][s] = w["status"].get(s, 0) + 1
                else:
                    print(line, flush=True)
        if time.monotonic() - started >= every:
            took = time.monotonic() - started
            for ln in summary(window, took):
                print(ln, flush=True)
            window, started = {}, time.monotonic()
    for ln in summary(window, max(time.monotonic() - started, 1e-3)):
        print(ln, flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
