#!/usr/bin/env python3
"""Short cycles of the cached public read, to bring out the gateway stalls
(docs/benchmarks.md, "With the gateway's copy of cached reads", the anomaly).

Each cycle: an idle pause longer than the read's max age (so the first
requests of the run all miss: one leads the fill, the others wait on it),
then `wrk -t2 -c256 -d2s` of GET /performances/{id}. A run under 10,000
requests/s is slow: the script saves the gateway's /metrics (suspended
connections, gRPC calls in flight), `ss -tanoip`, the gateway's thread
stacks and its fills in flight (gdb) into DIR/cycle-<n>/, and goes on. At the
end it prints how many cycles were slow and how often a fill's leader ended
without its answer and a waiter took over (the gateway's log).

    eval "$(deploy/local/infra.sh up)"; export DATABASE_URL REDIS_URL KAFKA_BROKERS
    flock /tmp/sb-test.lock python3 bench/fill_cycles.py [cycles=200] [pause_s=1.5] [dir=/tmp/fill-cycles]

With MHD_GDB=bench/mhd_state.gdb.py (and a libmicrohttpd with debug
information, see that file) a slow run also saves libmicrohttpd's state of
every connection (mhd.txt).

Uses the e2e ports (sbplatform.py): hold the test lock."""
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, Platform  # noqa: E402

GDB_FILLS = """set pagination off
p fills.head
p *fills.head
set $w = fills.head ? fills.head->waiters : 0
set $n = 0
while ($w != 0 && $n < 100000)
  set $n = $n + 1
  set $w = $w->fill_next
end
p $n
p loop.suspended
"""


def main():
    cycles = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    pause = float(sys.argv[2]) if len(sys.argv) > 2 else 1.5
    out_dir = sys.argv[3] if len(sys.argv) > 3 else "/tmp/fill-cycles"
    os.makedirs(out_dir, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    gdb_script = os.path.join(out_dir, "fills.gdb")
    with open(gdb_script, "w") as f:
        f.write(GDB_FILLS)
    with Platform(["member", "auth", "performance", "reservation"], env={"LOG_LEVEL": "warn"}) as p:
        _, planner = p.user("PLANNER")
        admin = p.login(ADMIN_LOGIN, ADMIN_PASSWORD)
        pid = benchlib.sell_performance(p, planner, admin, 100, 2)[0]["performanceId"]
        url = f"{p.base}/performances/{pid}"
        slow = []
        for n in range(cycles):
            time.sleep(pause)
            out = subprocess.run(["wrk", "-t2", "-c256", "-d2s", "--timeout", "30s", url],
                                 capture_output=True, text=True).stdout
            m = re.search(r"Requests/sec:\s+([\d.]+)", out)
            rps = float(m.group(1)) if m else 0.0
            line = f"{n} {rps:.0f} req/s"
            if rps < 10000:
                d = os.path.join(out_dir, f"cycle-{n}")
                os.makedirs(d, exist_ok=True)
                gw = str(p.proc("gateway").pid)
                benchlib.save_output(f"{d}/metrics.txt", ["curl", "-s", "-m", "3", f"{p.base}/metrics"])
                benchlib.save_output(f"{d}/ss.txt", ["ss", "-tanoip"])
                benchlib.save_output(f"{d}/stacks.txt", ["gdb", "-p", gw, "-batch", "-ex", "thread apply all bt 30"])
                benchlib.save_output(f"{d}/fills.txt", ["gdb", "-p", gw, "-batch", "-x", gdb_script])
                if os.environ.get("MHD_GDB"):
                    benchlib.save_output(f"{d}/mhd.txt", ["gdb", "-p", gw, "-batch", "-x", os.environ["MHD_GDB"]])
                s = re.search(r"^sb_gateway_suspended_connections (\d+)", open(f"{d}/metrics.txt").read(), re.M)
                line += f"  SLOW (suspended {s.group(1) if s else '?'}; saved {d})"
                slow.append(n)
            print(line, flush=True)
        with open(os.path.join(p.logdir, "gateway.log")) as f:
            log = f.read()
        print(f"slow cycles: {len(slow)} of {cycles} {slow}")
        print(f"fills whose leader ended without its answer: {log.count('while leading')},"
              f" taken over by a waiter: {log.count('another waiting read leads it')}")


if __name__ == "__main__":
    main()
