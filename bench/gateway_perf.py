#!/usr/bin/env python3
"""Where the gateway's time goes (issue 13): perf on the gateway while wrk
runs authenticated GET /members/{id}. Brings up member, auth and the gateway
(tests/e2e/sbplatform.py; GATEWAY_BINARY=path runs another gateway binary,
e.g. an older build, in its place), runs wrk for SECONDS at CONNS
connections and `perf record -g` on the gateway meanwhile, then prints the
share of samples in the kernel and user space, per thread kind, and the top
symbols. Needs perf (linux-perf) and root or perf_event_paranoid <= 1.

    eval "$(deploy/local/infra.sh up)"; export DATABASE_URL REDIS_URL KAFKA_BROKERS
    python3 bench/gateway_perf.py [seconds=10] [conns=64]
"""
import collections
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from sbplatform import GATEWAY_PORT, Platform  # noqa: E402


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    conns = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    with Platform(["member", "auth"], env={"LOG_LEVEL": "warn"}) as p:
        if os.environ.get("GATEWAY_BINARY"):
            p.kill("gateway")
            p.start("gateway", os.environ["GATEWAY_BINARY"], {"GATEWAY_PORT": str(GATEWAY_PORT)})
            p.wait_ready()
        member, tokens = p.user()
        url = f"{p.base}/members/{member['userId']}"
        pid = p.proc("gateway").pid
        data = os.path.join(tempfile.mkdtemp(prefix="sb-perf-"), "perf.data")
        wrk = subprocess.Popen(["wrk", "-t2", f"-c{conns}", f"-d{seconds + 2}s", "-H",
                                f"Authorization: Bearer {tokens['accessToken']}", url],
                               stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        subprocess.run(["perf", "record", "-q", "-g", "-F", "999", "-p", str(pid), "-o", data, "--", "sleep",
                        str(seconds)], check=True, stderr=subprocess.DEVNULL)
        with open(f"/proc/{pid}/status") as f:  # under load
            threads = [line.split()[1] for line in f if line.startswith("Threads:")][0]
        out = wrk.communicate()[0]
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    print(f"wrk -c{conns} GET /members/{{id}}: {float(rps):,.0f} req/s"
          f"{'; NON-2xx: ' + non2xx.group(1) if non2xx else ''}; gateway threads under load: {threads}")
    summarize(data)


def summarize(data):
    # one line per sample: comm, then the symbol and dso of its leaf
    script = subprocess.run(["perf", "script", "-i", data, "-F", "comm,ip,sym,dso"],
                            capture_output=True, text=True).stdout
    total, kernel = 0, 0
    by_comm, by_sym = collections.Counter(), collections.Counter()
    comm = None
    leaf = True
    for line in script.splitlines():
        if not line.strip():
            leaf = True
            continue
        if not line.startswith((" ", "\t")):
            comm = line.strip()
            leaf = True
            continue
        if leaf:
            leaf = False
            m = re.match(r"\s*([0-9a-f]+)\s+(.*)\s+\((.*)\)\s*$", line)
            if not m:
                continue
            sym, dso = m.group(2).split("+")[0], os.path.basename(m.group(3))
            total += 1
            k = "kernel" in dso or dso.startswith("[")
            kernel += k
            by_comm[re.sub(r"[-_ ]?\d+$", "", comm)] += 1
            by_sym[f"{sym} ({dso})"] += 1
    print(f"samples: {total}; kernel {100 * kernel / max(total, 1):.1f} %, "
          f"user {100 * (total - kernel) / max(total, 1):.1f} %")
    print("by thread: " + ", ".join(f"{c} {100 * n / total:.1f} %" for c, n in by_comm.most_common(6)))
    print("top leaf symbols:")
    for s, n in by_sym.most_common(15):
        print(f"  {100 * n / total:5.1f} %  {s}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--report":  # an existing perf.data
        summarize(sys.argv[2])
    else:
        main()
