#!/usr/bin/env python3
"""Side-by-side gateway benchmark (issue 13): one run, the same platform,
four ways in, interleaved in rounds:

    ours          our C gateway (gateway/, every check: JWT, revocation,
                  access policy, JSON <-> protobuf, mTLS to the service)
    grpc-gateway  grpc-gateway v1.6.4 (Debian), generated from proto/*.proto
                  (bench/grpcgw/build.sh), over mTLS with the gateway's
                  certificate, forwarding Authorization; the services check
                  the token themselves, as they do behind ours
    direct        direct gRPC to the service, an end user's client (TLS and
                  the bearer token): build/bench/bench-grpc-get-member
    nginx         nginx answering a fixed JSON body of the member read's size
                  (bench/nginx_ceiling.conf): this machine's HTTP ceiling

for four workloads at each connection count (default 64, 256, 1,024):

    auth    GET /members/{id} with the member's own access token
    public  GET /performances/{id}, no token, the same performance repeated
    revalidate  the same GET with If-None-Match: the ETag our gateway gave
            (a client revalidating its copy: 304 without a body where the
            gateway supports it; grpc-gateway ignores the header and answers
            200; no direct gRPC row). Run only when our gateway sends an ETag
    hold    POST /reservations, the flash-sale hold of one chosen seat:
            every request a new buyer (own token) and a different free
            seat of a fresh schedule of 20,000 seats (4 grades x 5,000) per
            cell, so every hold is granted (bench/hold.lua)

(nginx once per round and connection count: it answers every path alike).
HTTP load: wrk -t2 (bench/hold.lua for the hold); gRPC load: one channel, C
threads. Each cell: requests/s, p50, p99 and errors (non-2xx answers,
socket errors and timeouts counted, never dropped); the tables give the
median over the rounds and every round's requests/s, and where the CPU went:
each server-side process's CPU time (/proc, user + system) and the load
generator's, per request, so a ratio can be read against what each path
costs the machine. Then the RSS of our
gateway holding 10,000 idle keep-alive connections (bench/idle_rss.py).

Brings up member, auth, performance, reservation and our gateway
(tests/e2e/sbplatform.py: the e2e ports, run it under the test lock) in
namespace "gwbench" (its databases dropped first), then grpc-gateway and
nginx on free ports. Installs golang-go, the grpc-gateway packages and
nginx-light with apt-get when missing (bench time only, never for tests).

    eval "$(deploy/local/infra.sh up)"; export DATABASE_URL REDIS_URL KAFKA_BROKERS
    flock /tmp/sb-test.lock python3 bench/gateway_compare.py [--rounds 3] [--duration 4]
        [--conns 64,256,1024] [--workloads auth,public,revalidate,hold] [--idle 10000] [--quick] [--env K=V ...]

`make bench` runs it (BENCH_ARGS adds options); --quick is a smoke run
(64 connections, 1 round of 2 s, 1,000 idle connections).
"""
import argparse
import datetime as dt
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, GATEWAY_PORT, GRPC_BASE, SERVICES, Platform, free_port  # noqa: E402
sys.path.insert(0, HERE)
import benchlib  # noqa: E402

NAMESPACE = "gwbench"
GRADES = ["R", "S", "A", "B"]
GRADE_SEATS = 5000  # PERF_GRADE_SEATS_MAX: 4 x 5,000 = 20,000 seats a schedule
BUYERS = 20000       # a buyer holds once per schedule (RESV_MAX_PENDING 1)
TARGETS = ["ours", "grpc-gateway", "direct", "nginx"]
NAMES = {"ours": "our gateway", "grpc-gateway": "grpc-gateway", "direct": "direct gRPC", "nginx": "nginx fixed JSON"}
WORKLOADS = {"auth": "authenticated read GET /members/{id}", "public": "public read GET /performances/{id}",
             "revalidate": "public read, If-None-Match (304)",
             "hold": "flash-sale hold POST /reservations"}


def grpc_addr(service):
    return f"127.0.0.1:{GRPC_BASE + 1 + SERVICES.index(service)}"


def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url, conns, seconds, headers=(), script=None, script_args=()):
    """One wrk run: {rps, p50, p99, errors, requests}; errors = non-2xx/3xx
    answers + socket errors (connect, read, write, timeout)."""
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--timeout", "30s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", script]
    cmd.append(url)
    if script_args:
        cmd += ["--", *script_args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    out = r.stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if r.returncode != 0 or not m:
        print(f"wrk failed ({r.returncode}): {' '.join(cmd)}\n{out}{r.stderr}", file=sys.stderr)
        return {"rps": 0.0, "p50": -1, "p99": -1, "errors": -1, "requests": 0}
    lat = dict((p, ms(v, u)) for p, v, u in re.findall(r"\s(50|99)%\s+([\d.]+)(us|ms|s)\b", out))
    kinds = {}
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if n:
        kinds["non2xx"] = int(n.group(1))
    s = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if s:
        kinds.update((k, int(v)) for k, v in zip(("connect", "read", "write", "timeout"), s.groups()) if int(v))
    req = re.search(r"(\d+) requests in", out)
    r = {"rps": float(m.group(1)), "p50": lat.get("50", -1), "p99": lat.get("99", -1),
         "errors": sum(kinds.values()), "requests": int(req.group(1)) if req else 0}
    if kinds:
        r["error_kinds"] = kinds
    return r


# server-side processes whose CPU a cell reports (by /proc comm), and the
# names the tables give them
CPU_PROCS = {"sb-gateway": "ours", "sb-grpcgw": "grpc-gateway", "sb-member": "member",
             "sb-performance": "performance", "sb-reservation": "reservation", "sb-auth": "auth",
             "postgres": "postgres", "redis-server": "redis", "nginx": "nginx"}


def cpu_ticks():
    """{name: utime + stime in clock ticks} summed over the live processes
    named in CPU_PROCS, plus "client": this process's finished children (wrk,
    bench-grpc-get-member). A process that exits in between loses its share
    (PostgreSQL's backends here are pooled and live through a cell)."""
    out = dict.fromkeys(CPU_PROCS.values(), 0)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        name = CPU_PROCS.get(st[st.index("(") + 1:st.rindex(")")])
        if name:
            fields = st[st.rindex(")") + 2:].split()
            out[name] += int(fields[11]) + int(fields[12])
    t = os.times()
    out["client"] = (t.children_user + t.children_system) * os.sysconf("SC_CLK_TCK")
    return out


def direct(p, rpc, ident, conns, seconds, token=None, tokens_file=None):
    """bench-grpc-get-member: C threads over one TLS channel, an end user's
    client (no certificate of its own)."""
    env = {k: v for k, v in p.env.items() if k not in ("TLS_CERT_FILE", "TLS_KEY_FILE", "SB_BENCH_TOKEN")}
    env["SB_BENCH_RPC"] = {"GetMember": "/sb.member.MemberService/GetMember",
                           "GetPerformance": "/sb.performance.PerformanceService/GetPerformance",
                           "CreateReservation": "/sb.reservation.ReservationService/CreateReservation"}[rpc]
    if token:
        env["SB_BENCH_TOKEN"] = token
    if tokens_file:
        env["SB_BENCH_TOKENS"] = tokens_file
        env["SB_BENCH_GRADES"] = ",".join(GRADES)
    target = {"GetMember": grpc_addr("member"), "GetPerformance": grpc_addr("performance"),
              "CreateReservation": grpc_addr("reservation")}[rpc]
    r = subprocess.run([os.path.join(p.build, "bench", "bench-grpc-get-member"), target, ident, str(conns),
                        str(seconds)], capture_output=True, text=True, env=env)
    try:
        j = json.loads(r.stdout)
    except ValueError:
        print(f"bench-grpc-get-member {rpc} failed ({r.returncode}): {r.stdout}{r.stderr}", file=sys.stderr)
        return {"rps": 0.0, "p50": -1, "p99": -1, "errors": -1, "requests": 0}
    if r.stderr.strip():
        print(r.stderr.strip()[:500], file=sys.stderr)
    return {"rps": float(j["rps"]), "p50": j["p50_ms"], "p99": j["p99_ms"], "errors": j["errors"],
            "requests": j["requests"]}


class Proc:
    """A helper process (grpc-gateway, nginx) with its log; stopped on exit."""

    def __init__(self, name, cmd, logdir, env=None):
        self.log_path = os.path.join(logdir, f"{name}.log")
        self.log = open(self.log_path, "a")
        self.name = name
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, env=env)

    def wait_http(self, url, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.p.poll() is not None:
                raise SystemExit(f"{self.name} exited: {open(self.log_path).read()[-2000:]}")
            try:
                subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "1", url], check=True)
                return
            except subprocess.CalledProcessError:
                time.sleep(0.1)
        raise SystemExit(f"{self.name} not answering at {url}")

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def nginx_conf(path, port, body, workdir):
    with open(os.path.join(HERE, "nginx_ceiling.conf")) as f:
        conf = f.read()
    conf = (conf.replace("@PORT@", str(port)).replace("@WORKERS@", str(os.cpu_count() or 1))
            .replace("@DIR@", workdir).replace("@BODY@", body))
    with open(path, "w") as f:
        f.write(conf)


def fixed_body(size):
    """A JSON object of exactly size bytes, nothing nginx would interpret."""
    filler = max(size - len('{"ceiling":""}'), 0)
    return '{"ceiling":"' + "x" * filler + '"}'


def ensure_nginx():
    if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"):
        return "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else shutil.which("nginx")
    print("gateway_compare: installing nginx-light", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # policy-rc.d exit 101: Debian's postinst must not start the packaged nginx on port 80
    rc_path = "/usr/sbin/policy-rc.d"
    had = os.path.exists(rc_path)
    if not had and os.geteuid() == 0:
        with open(rc_path, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(rc_path, 0o755)
    try:
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nginx-light"],
                       check=True, env=env, stdout=sys.stderr)
    finally:
        if not had and os.path.exists(rc_path):
            os.remove(rc_path)
    return "/usr/sbin/nginx"


def fmt_ms(v):
    return "-" if v is None or v < 0 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def med(rows, key):
    vals = [r[key] for r in rows if r[key] is not None and r[key] >= 0]
    return statistics.median(vals) if vals else -1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=4, help="seconds per cell")
    ap.add_argument("--conns", default="64,256,1024")
    ap.add_argument("--workloads", default="auth,public,revalidate,hold")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--idle", type=int, default=10000, help="idle keep-alive connections for the RSS (0: skip)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 64 connections, 1 round of 2 s, 1,000 idle")
    ap.add_argument("--env", action="append", default=[], help="K=V for every service and our gateway")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration, args.conns, args.idle = 1, 2, "64", min(args.idle, 1000)
    conns = [int(c) for c in args.conns.split(",")]
    workloads = [w for w in args.workloads.split(",") if w]
    targets = [t for t in args.targets.split(",") if t]
    for w in workloads:
        if w not in WORKLOADS:
            raise SystemExit(f"unknown workload {w}")
    n_holds = len(conns) * args.rounds * len([t for t in targets if t != "nginx"]) if "hold" in workloads else 0
    if n_holds + 1 > 100:
        raise SystemExit("more than 99 hold cells (one schedule each; a performance has at most 100)")

    # 1,024 connections through wrk, 10,000 idle ones: the hard limit for us
    # and every process we start (the gateway inherits it)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < max(conns + [args.idle]) + 256:
        print(f"gateway_compare: RLIMIT_NOFILE hard limit {hard} is low for {max(conns + [args.idle])}"
              " connections", file=sys.stderr)

    grpcgw_bin = None
    if "grpc-gateway" in targets:
        grpcgw_bin = subprocess.run([os.path.join(HERE, "grpcgw", "build.sh")], check=True, capture_output=True,
                                    text=True).stdout.strip().splitlines()[-1]
    nginx_bin = ensure_nginx() if "nginx" in targets else None

    os.environ["SB_NAMESPACE"] = NAMESPACE
    benchlib.drop_databases(NAMESPACE)
    env = {"LOG_LEVEL": "warn", "OUTBOX_POLL_MS": "100",
           "GATEWAY_MAX_CONNECTIONS": str(max(conns + [args.idle]) + 256),
           # holds of earlier cells must not expire (and emit events) while later cells run
           "HOLD_TTL_S": "86400"}
    env.update(kv.split("=", 1) for kv in args.env)
    results = {}  # (workload, conns, target) -> [per round]
    helpers = []
    work = tempfile.mkdtemp(prefix="sb-gwbench-")
    idle = None
    started = time.time()
    with Platform(["member", "auth", "performance", "reservation"], env=env) as p:
        try:
            member, tokens = p.user()
            token = tokens["accessToken"]
            uid = member["userId"]
            _, planner = p.user("PLANNER")
            admin = p.login(ADMIN_LOGIN, ADMIN_PASSWORD)
            # the public read: a small performance, two schedules of 100 seats
            pid_public = benchlib.sell_performance(p, planner, admin, 100, 2)[0]["performanceId"]
            # the holds: one schedule per cell (and one to warm up), BUYERS buyers
            hold_sids = []
            tokens_file = os.path.join(work, "buyers.tokens")
            if "hold" in workloads:
                hold_sids = benchlib.sell_performance(p, planner, admin, GRADE_SEATS, n_holds + 1,
                                                     grades=GRADES, timeout=600)[1]
                ids = benchlib.make_members(NAMESPACE, BUYERS)
                with open(tokens_file, "w") as f:
                    f.write("\n".join(benchlib.sign_tokens(p.signing_key, p.kid, ids)) + "\n")
            st, _, hdrs = p.call("GET", f"/performances/{pid_public}")
            etag = {k.lower(): v for k, v in hdrs.items()}.get("etag")
            if "revalidate" in workloads and not etag:
                print("gateway_compare: our gateway sends no ETag: no revalidate workload", file=sys.stderr)
                workloads.remove("revalidate")
            st, body, hdrs = p.call("GET", f"/members/{uid}", token=token)
            assert st == 200, (st, body)
            member_bytes = len(json.dumps(body, separators=(",", ":")).encode())

            gw_port = free_port()
            if grpcgw_bin:
                helpers.append(Proc("grpcgw", [grpcgw_bin, "-listen", f"127.0.0.1:{gw_port}",
                                               "-ca", os.path.join(p.pki, "ca.crt"),
                                               "-cert", os.path.join(p.pki, "gateway", "tls.crt"),
                                               "-key", os.path.join(p.pki, "gateway", "tls.key"),
                                               "-member", grpc_addr("member"),
                                               "-performance", grpc_addr("performance"),
                                               "-reservation", grpc_addr("reservation")], work))
                helpers[-1].wait_http(f"http://127.0.0.1:{gw_port}/performances/{pid_public}")
            ng_port = free_port()
            if nginx_bin:
                for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                    os.makedirs(os.path.join(work, d), exist_ok=True)
                nginx_conf(os.path.join(work, "nginx.conf"), ng_port, fixed_body(member_bytes), work)
                helpers.append(Proc("nginx", [nginx_bin, "-p", work, "-c", os.path.join(work, "nginx.conf")], work))
                helpers[-1].wait_http(f"http://127.0.0.1:{ng_port}/")

            bases = {"ours": p.base, "grpc-gateway": f"http://127.0.0.1:{gw_port}"}

            def skip(w, t):
                return t == "nginx" or (w == "revalidate" and t == "direct")
            hold_lua = os.path.join(HERE, "hold.lua")
            next_sid = iter(hold_sids)

            def run(w, t, c, seconds):
                if t == "nginx":
                    return wrk(f"http://127.0.0.1:{ng_port}/members/{uid}", c, seconds)
                if w == "auth":
                    if t == "direct":
                        return direct(p, "GetMember", uid, c, seconds, token=token)
                    return wrk(f"{bases[t]}/members/{uid}", c, seconds, headers=[f"Authorization: Bearer {token}"])
                if w == "public":
                    if t == "direct":
                        return direct(p, "GetPerformance", pid_public, c, seconds)
                    return wrk(f"{bases[t]}/performances/{pid_public}", c, seconds)
                if w == "revalidate":
                    return wrk(f"{bases[t]}/performances/{pid_public}", c, seconds,
                               headers=[f"If-None-Match: {etag}"])
                sid = next(next_sid)
                if t == "direct":
                    r = direct(p, "CreateReservation", sid, c, seconds, tokens_file=tokens_file)
                else:
                    r = wrk(f"{bases[t]}/reservations", c, seconds, script=hold_lua,
                            script_args=[tokens_file, sid, ",".join(GRADES), "2"])
                held = benchlib.psql(benchlib.db_url(f"sb_reservation_{NAMESPACE}"),
                                     f"SELECT count(*) FROM reservations WHERE schedule_id = '{sid}'").strip()
                r["held_db"] = int(held or -1)
                return r

            # warm-up, not reported: every path once at 64 connections for 1 s
            for w in workloads:
                for t in targets:
                    if skip(w, t):
                        continue
                    if w != "hold" or t == targets[0]:  # one warm-up schedule
                        print(f"warm-up {w} {t}: {json.dumps(run(w, t, 64, 1))}", file=sys.stderr)
            if "nginx" in targets:
                print(f"warm-up nginx: {json.dumps(run('ceiling', 'nginx', 64, 1))}", file=sys.stderr)

            def cell(w, t, c, rnd):
                before = cpu_ticks()
                r = run(w, t, c, args.duration)
                after = cpu_ticks()
                if r["requests"] > 0:  # CPU µs per request, per process
                    hz = os.sysconf("SC_CLK_TCK")
                    r["cpu_us"] = {k: round((after[k] - before[k]) / hz * 1e6 / r["requests"], 1)
                                   for k in after if after[k] > before[k]}
                r["round"] = rnd + 1
                results.setdefault((w, c, t), []).append(r)
                print(f"round {rnd + 1} {w} C={c} {t}: {json.dumps(r)}", file=sys.stderr)

            for rnd in range(args.rounds):
                for c in conns:
                    for w in workloads:
                        for t in targets:
                            if not skip(w, t):
                                cell(w, t, c, rnd)
                    if "nginx" in targets:  # one ceiling: nginx answers every path alike
                        cell("ceiling", "nginx", c, rnd)

            if args.idle:
                gw = p.proc("gateway")
                out = subprocess.run([sys.executable, os.path.join(HERE, "idle_rss.py"), "--pid", str(gw.pid),
                                      "--port", str(GATEWAY_PORT), "--conns", str(args.idle)],
                                     capture_output=True, text=True)
                sys.stderr.write(out.stderr)
                try:
                    idle = json.loads(out.stdout)
                except ValueError:
                    idle = None
                    print(f"idle_rss failed: {out.stdout}", file=sys.stderr)
                print(f"idle: {out.stdout.strip()}", file=sys.stderr)
        finally:
            for h in helpers:
                h.stop()

    report(args, conns, workloads, targets, results, idle, member_bytes, time.time() - started)


def report(args, conns, workloads, targets, results, idle, member_bytes, elapsed):
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h %s"], capture_output=True,
                          text=True).stdout.strip()
    print(f"\nSide by side, {today}, commit {head[:90]}; {args.rounds} round(s) of {args.duration} s per cell,"
          f" interleaved; medians over the rounds (every round's requests/s in the last column); "
          f"run took {elapsed:.0f} s\n")
    print("| workload | C | path | requests/s | p50 ms | p99 ms | errors | requests/s per round |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |")
    rows = [(w, c) for c in conns for w in workloads] + [("ceiling", c) for c in conns]
    for w, c in rows:
        for t in targets:
            rs = results.get((w, c, t))
            if not rs:
                continue
            errs = "?" if any(r["errors"] < 0 for r in rs) else sum(r["errors"] for r in rs)
            name = f"ceiling ({member_bytes} B JSON)" if w == "ceiling" else WORKLOADS[w]
            per_round = " / ".join(f"{r['rps']:,.0f}" for r in rs)
            print(f"| {name} | {c:,} | {NAMES[t]} | {med(rs, 'rps'):,.0f} | {fmt_ms(med(rs, 'p50'))} | "
                  f"{fmt_ms(med(rs, 'p99'))} | {errs} | {per_round} |")

    def get(w, c, t, k):
        rs = results.get((w, c, t))
        return med(rs, k) if rs else -1

    print("\n| workload | C | ours / grpc-gateway req/s | ours / direct gRPC req/s | p99 ms ours / grpc-gateway |"
          " ours / nginx ceiling |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for c in conns:
        for w in workloads:
            o, g, d, n = (get(w, c, t, "rps") for t in ("ours", "grpc-gateway", "direct", "nginx"))
            n = get("ceiling", c, "nginx", "rps")
            ratio = lambda a, b: f"{a / b:.2f}" if a > 0 and b > 0 else "-"  # noqa: E731
            print(f"| {WORKLOADS[w]} | {c:,} | {ratio(o, g)} | {ratio(o, d)} | "
                  f"{fmt_ms(get(w, c, 'ours', 'p99'))} / {fmt_ms(get(w, c, 'grpc-gateway', 'p99'))} | "
                  f"{ratio(o, n) if w != 'hold' else '-'} |")

    # where the CPU went: per request, medians over the rounds
    procs = [n for n in list(CPU_PROCS.values()) + ["client"]
             if any(n in r.get("cpu_us", {}) for rs in results.values() for r in rs)]
    if procs:
        print("\nCPU per request (µs, user + system, from /proc; medians over the rounds; client = wrk or"
              " bench-grpc-get-member; total = all of them, what the two cores must pay per request):\n")
        print("| workload | C | path | " + " | ".join(procs) + " | total |")
        print("| --- | ---: | --- | " + " | ".join("---:" for _ in procs) + " | ---: |")
        for w, c in rows:
            for t in targets:
                rs = [r for r in results.get((w, c, t), []) if "cpu_us" in r]
                if not rs:
                    continue
                vals = [statistics.median(r["cpu_us"].get(n, 0.0) for r in rs) for n in procs]
                tot = statistics.median(sum(r["cpu_us"].values()) for r in rs)
                name = "ceiling" if w == "ceiling" else w
                print(f"| {name} | {c:,} | {NAMES[t]} | " + " | ".join(f"{v:,.0f}" if v else "-" for v in vals)
                      + f" | {tot:,.0f} |")

    if "hold" in workloads:
        print("\nHolds: every cell on its own schedule; 2xx answers counted by the load generator / reservations"
              " in the database (wrk does not count the answers still in flight when it stops):")
        for c in conns:
            for t in targets:
                rs = results.get(("hold", c, t))
                if rs:
                    print(f"- C={c} {NAMES[t]}: " + ", ".join(f"{r['requests'] - max(r['errors'], 0)} answered 2xx /"
                                                             f" {r.get('held_db', -1)} in db" for r in rs))
    # the targets
    print("\nTargets (issue 13):")
    for c in conns:
        o, g, d = (get("auth", c, t, "rps") for t in ("ours", "grpc-gateway", "direct"))
        if o > 0 and g > 0 and d > 0:
            print(f"- C={c} authenticated read: ours/grpc-gateway {o / g:.2f} (target >= 1.5) "
                  f"{'met' if o / g >= 1.5 else 'NOT met'}; ours/direct {o / d:.2f} (target >= 0.80) "
                  f"{'met' if o / d >= 0.8 else 'NOT met'}")
    if 1024 in conns:
        for w in workloads:
            po, pg = get(w, 1024, "ours", "p99"), get(w, 1024, "grpc-gateway", "p99")
            if po > 0 and pg > 0:
                print(f"- C=1,024 {w}: p99 ours {po:.1f} ms vs grpc-gateway {pg:.1f} ms "
                      f"{'met' if po < pg else 'NOT met'} (target: below)")
    for w in ("public", "revalidate"):
        pub = [get(w, c, "ours", "rps") for c in conns]
        if any(v > 0 for v in pub):
            print(f"- {WORKLOADS[w]} through our gateway: best {max(pub):,.0f} requests/s (target for repeated"
                  f" public reads >= 20,000) {'met' if max(pub) >= 20000 else 'NOT met'}")
    if idle:
        print(f"\nOur gateway with {idle['connections']:,} idle keep-alive connections (one GET /healthz each, then "
              f"idle): VmRSS {idle['rss_idle_kb'] / 1024:,.1f} MiB (at rest before: "
              f"{idle['rss_before_kb'] / 1024:,.1f} MiB; {idle['rss_per_conn_kb']} KiB per connection), "
              f"threads {idle['threads_before']} -> {idle['threads_idle']}; answered {idle['answered']:,}, "
              f"failed {idle['failed']:,}, still open when read {idle['open_at_read']:,}; "
              f"opened in {idle['seconds_to_open']} s")


if __name__ == "__main__":
    main()
