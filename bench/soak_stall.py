#!/usr/bin/env python3
"""Soak for the gateway stall seen in `make bench` (docs/benchmarks.md, "With
the gateway's copy of cached reads", the anomaly): now and then a
`wrk -c256` run of the cached public read gets a few hundred requests/s
instead of tens of thousands, with no errors and no CPU spent.

Loop until SECONDS have passed: 3 s of authenticated reads at 256
connections, an idle pause of 0-45 s, then 6 s of public reads
(GET /performances/{id}) at 256 connections. 2 s into each public run the
gateway's count of those reads is read twice, 0.5 s apart; when it grows by
fewer than 2,000 the run is a stall, and the script saves, before the run
ends, `ss -tanoip` (every socket, with owner and timers) twice around the
gateway's thread stacks (gdb), and the gateway's /metrics (its suspended
connections and gRPC calls in flight) into DIR/stall-<n>-*.txt, then stops.

    eval "$(deploy/local/infra.sh up)"; export DATABASE_URL REDIS_URL KAFKA_BROKERS
    flock /tmp/sb-test.lock python3 bench/soak_stall.py [seconds=900] [dir=/tmp]

Uses the e2e ports (sbplatform.py): hold the test lock. SIGTERM and SIGINT
stop the platform it started (an interrupted run must not leave a gateway
behind on the e2e ports: the next run would measure that one)."""
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, Platform  # noqa: E402

READS = re.compile(r'^sb_rpc_calls_total\{method="GET /performances/\{performanceId\}"\} (\d+)$', re.M)


def reads(base):
    """The gateway's count of public reads so far; -1 when /metrics does not answer within 1 s."""
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=1) as r:
            m = READS.search(r.read().decode())
    except OSError:
        return -1
    return int(m.group(1)) if m else 0


def wrk(url, seconds, token=None):
    cmd = ["wrk", "-t2", "-c256", f"-d{seconds}s", "--timeout", "30s", url]
    if token:
        cmd[1:1] = ["-H", f"Authorization: Bearer {token}"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 900
    out_dir = sys.argv[2] if len(sys.argv) > 2 else "/tmp"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    rnd = random.Random(11)
    with Platform(["member", "auth", "performance", "reservation"], env={"LOG_LEVEL": "warn"}) as p:
        _, planner = p.user("PLANNER")
        admin = p.login(ADMIN_LOGIN, ADMIN_PASSWORD)
        pid = benchlib.sell_performance(p, planner, admin, 100, 2)[0]["performanceId"]
        member, tokens = p.user()
        url = f"{p.base}/performances/{pid}"
        deadline = time.time() + seconds
        n = 0
        while time.time() < deadline:
            wrk(f"{p.base}/members/{member['userId']}", 3, tokens["accessToken"]).communicate()
            pause = rnd.choice([0, 5, 20, 35, 45])
            time.sleep(pause)
            w = wrk(url, 6)
            time.sleep(2.0)
            a = reads(p.base)
            time.sleep(0.5)
            b = reads(p.base)
            stalled = a < 0 or b < 0 or b - a < 2000
            if stalled:
                gw = str(p.proc("gateway").pid)
                # where the waiting requests are: sb_gateway_suspended_connections with
                # sb_gateway_rpc_in_flight 0 is a resume that did not wake its loop;
                # calls in flight that do not finish are a stalled gRPC call
                benchlib.save_output(f"{out_dir}/stall-{n}-metrics.txt", ["curl", "-s", "-m", "2", f"{p.base}/metrics"])
                benchlib.save_output(f"{out_dir}/stall-{n}-ss-before.txt", ["ss", "-tanoip"])
                benchlib.save_output(f"{out_dir}/stall-{n}-gateway-stacks.txt", ["gdb", "-p", gw, "-batch", "-ex", "thread apply all bt 25"])
                benchlib.save_output(f"{out_dir}/stall-{n}-ss-after.txt", ["ss", "-tanoip"])
            text = w.communicate()[0]
            m = re.search(r"Requests/sec:\s+([\d.]+)", text)
            errors = re.findall(r"(Non-2xx.*|Socket errors.*)", text)
            print(f"{n} pause {pause} s: {m.group(1) if m else '?'} req/s, reads +{b - a} in 0.5 s {errors}"
                  f"{' STALL: saved ' + out_dir + '/stall-' + str(n) + '-*' if stalled else ''}", flush=True)
            if stalled:
                break
            n += 1


if __name__ == "__main__":
    main()
