#!/usr/bin/env python3
"""Cached reads benchmark (issue 13): GET /performances/{id} through the
gateway (wrk, anonymous, CONNS connections) and GetPerformance over gRPC
straight to the performance service (bench-grpc-get-member with
SB_BENCH_RPC), with the runtime's cache of answers off
(RPC_CACHE_MAX_ENTRIES=0: every read runs the handler's transaction) and on
(the default), plus a revalidation with If-None-Match (304, no body).
Medians of RUNS runs of SECONDS each; prints a docs/benchmarks.md table.

    flock /tmp/sb-test.lock python3 bench/cached_reads.py [seconds=10] [runs=3]

Uses the e2e test ports (sbplatform.py): hold the shared test lock."""
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import sell  # noqa: E402
from identity import CONNS, wrk  # noqa: E402
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, GRPC_BASE, SERVICES, Platform  # noqa: E402


def grpc_get_performance(p, pid, seconds):
    env = {k: v for k, v in p.env.items() if k not in ("TLS_CERT_FILE", "TLS_KEY_FILE")}
    env["SB_BENCH_RPC"] = "/sb.performance.PerformanceService/GetPerformance"
    env.pop("SB_BENCH_TOKEN", None)
    port = GRPC_BASE + 1 + SERVICES.index("performance")
    out = subprocess.run([os.path.join(p.build, "bench", "bench-grpc-get-member"), f"127.0.0.1:{port}", pid,
                          str(CONNS), str(seconds)], capture_output=True, text=True, check=True, env=env).stdout
    r = json.loads(out)
    return r["rps"], r["p50_ms"], r["p99_ms"]


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    results = {}
    for label, entries in (("cache off", "0"), ("cache on", "10000")):
        env = {"LOG_LEVEL": "warn", "RPC_CACHE_MAX_ENTRIES": entries, "GATEWAY_MAX_CONNECTIONS": "1024"}
        with Platform(["member", "auth", "performance", "reservation"], env=env) as p:
            admin = p.login(ADMIN_LOGIN, ADMIN_PASSWORD)
            _, planner = p.user("PLANNER")
            sell(p, planner, admin, 100, 1)
            st, page, _ = p.call("GET", "/performances?pageSize=1")
            pid = page["performances"][0]["performanceId"]
            url = f"{p.base}/performances/{pid}"
            etag = p.call("GET", f"/performances/{pid}")[2]["ETag"]
            cases = {
                f"gateway GET /performances/{{id}} ({label})": lambda: wrk(url, seconds),
                f"gateway GET /performances/{{id}} with If-None-Match -> 304 ({label})":
                    lambda: wrk(url, seconds, headers={"If-None-Match": etag}),
                f"direct gRPC GetPerformance ({label})": lambda: grpc_get_performance(p, pid, seconds),
            }
            for name, run in cases.items():
                samples = [run() for _ in range(runs)]
                results[name] = tuple(statistics.median(s[i] for s in samples) for i in range(3))
                print(f"{name}: {samples}", file=sys.stderr)
    print(f"| read ({CONNS} connections, {seconds} s x {runs} runs, medians) | requests/s | p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, (rps, p50, p99) in results.items():
        print(f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()
