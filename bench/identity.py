#!/usr/bin/env python3
"""Identity benchmark (issue 3): GET /members/{id} with a valid token through
the gateway, the same RPC called directly over gRPC (as an end-user client:
server-side TLS and the access token, verified by the member service), and
the gateway's own /healthz, each at 64 connections. Brings up member, auth and the gateway
(tests/e2e/sbplatform.py) against the running PostgreSQL/Redis/Kafka; prints a
markdown table of median requests/s and p50/p99 over RUNS runs.

    eval "$(deploy/local/infra.sh up)"; export DATABASE_URL REDIS_URL KAFKA_BROKERS
    python3 bench/identity.py [seconds=10] [runs=3]
"""
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from sbplatform import GRPC_BASE, Platform  # noqa: E402

CONNS = int(os.environ.get("BENCH_CONNS", "64"))  # BENCH_CONNS=256 for another load


def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url, seconds, token=None, headers=None):
    cmd = ["wrk", "-t2", f"-c{CONNS}", f"-d{seconds}s", "--latency", url]
    if token:
        cmd[1:1] = ["-H", f"Authorization: Bearer {token}"]
    for k, v in (headers or {}).items():
        cmd[1:1] = ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict((p, ms(v, u)) for p, v, u in re.findall(r"\s(50|99)%\s+([\d.]+)(us|ms|s)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{url}: {non2xx.group(1)} error responses\n{out}")
    return rps, lat["50"], lat["99"]


def grpc(p, user_id, token, seconds):
    # an end user's client: the platform CA to verify the server, no certificate of its own
    env = {k: v for k, v in p.env.items() if k not in ("TLS_CERT_FILE", "TLS_KEY_FILE")}
    env["SB_BENCH_TOKEN"] = token
    out = subprocess.run([os.path.join(p.build, "bench", "bench-grpc-get-member"), f"127.0.0.1:{GRPC_BASE + 1}",
                          user_id, str(CONNS), str(seconds)], capture_output=True, text=True, check=True,
                         env=env).stdout
    r = json.loads(out)
    return r["rps"], r["p50_ms"], r["p99_ms"]


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with Platform(["member", "auth"], env={"LOG_LEVEL": "warn"}) as p:
        member, tokens = p.user()
        url = f"{p.base}/members/{member['userId']}"
        cases = {
            "gateway GET /members/{id} (JWT + denylist + gRPC)": lambda: wrk(url, seconds, tokens["accessToken"]),
            "direct gRPC MemberService/GetMember (TLS + JWT + denylist)":
                lambda: grpc(p, member["userId"], tokens["accessToken"], seconds),
            "gateway GET /healthz (no backend)": lambda: wrk(f"{p.base}/healthz", seconds),
        }
        results = {}
        for name, run in cases.items():
            samples = [run() for _ in range(runs)]
            results[name] = tuple(statistics.median(s[i] for s in samples) for i in range(3))
            print(f"{name}: {samples}", file=sys.stderr)
    print(f"| path ({CONNS} connections, {seconds} s x {runs} runs, medians) | requests/s | p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, (rps, p50, p99) in results.items():
        print(f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} |")
    gw, direct = list(results.values())[0], list(results.values())[1]
    print(f"\ngateway cost per request (p50 gateway - p50 direct): {gw[1] - direct[1]:.2f} ms; "
          f"CPU-bound throughput ratio gateway/direct: {gw[0] / direct[0]:.2f}")


if __name__ == "__main__":
    main()
