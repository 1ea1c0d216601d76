#!/usr/bin/env python3
"""Flash-sale benchmark runner (issue 10): brings up member, auth,
performance, reservation and the gateway (tests/e2e/sbplatform.py, the e2e
ports: run it under the test lock) in namespace "flash" (databases
sb_<service>_flash, dropped first, and topics sb.<x>.flash), has a planner
register one performance per run with a schedule of S seats (one grade) per
matrix cell, an admin approve it, waits until every seat map is served, then
runs bench/flash_sale.c (build/bench/bench-flash-sale) once per cell on its own
fresh schedule:

    transport  REST through the gateway | direct gRPC to the reservation service
    mode       chosen seats | best available
    C          64, 256, 1,024 connections (gRPC: calls in flight)

and bench/flash_sale_pgbench.sh (the hold's SQL alone, pgbench, 64
connections) on one more fresh schedule per mode. Prints a markdown table of
the medians over the runs (every run's JSON on stderr).

The B buyers are real members (rows inserted into the member database, not
timed: signing up 10,000 members through Argon2id would take an hour on this
machine) whose access tokens the benchmark signs with the platform's key.

    eval "$(deploy/local/infra.sh up)"; export DATABASE_URL REDIS_URL KAFKA_BROKERS
    flock /tmp/sb-test.lock python3 bench/flash_sale.py [--runs 3] [--buyers 10000] [--seats 1000]
        [--conns 64,256,1024] [--modes seats,best] [--transports rest,grpc] [--quantity 2]
        [--no-pgbench] [--env K=V ...]

`make bench-flash` runs it with the defaults (BENCH_FLASH_ARGS adds options).
--env K=V is given to every service (GRPC_WORKERS=16, DB_POOL_SIZE=32, ...).
"""
import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, GRPC_BASE, SERVICES, Platform  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import db_url, drop_databases, median, psql  # noqa: E402,F401

# the runner's namespace (sb_reservation_bench is bench-inventory-approve's);
# the smoke test (tests/e2e/test_flash_sale.py) runs in the tests' "test"
NAMESPACE = "flash"
GRADE = "R"


def ns():
    return os.environ.get("SB_NAMESPACE") or NAMESPACE


def drop_bench_databases():
    drop_databases(ns())


def make_members(n, path):
    """n USER members straight into the member database; their ids into path."""
    benchlib.make_members(ns(), n, path)


def sell(p, planner, admin, seats, n_schedules):
    return benchlib.sell(p, planner, admin, seats, n_schedules, grade=GRADE)


# CPU time of the server side, by process name (/proc/<pid>/comm): where a
# hold's machine time goes on this shared 2-core box
CPU_PARTS = {"sb-reservation": "reservation", "postgres": "postgres", "sb-gateway": "gateway", "java": "kafka"}


def cpu_ticks():
    out = dict.fromkeys(CPU_PARTS.values(), 0)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        if comm in CPU_PARTS:
            fields = st[st.rindex(")") + 2:].split()
            out[CPU_PARTS[comm]] += int(fields[11]) + int(fields[12])  # utime + stime
    return out


def bench_binary(p):
    """build/bench/bench-flash-sale of the platform's build, or $BENCH_FLASH_SALE."""
    return os.environ.get("BENCH_FLASH_SALE") or os.path.join(p.build, "bench", "bench-flash-sale")


def run_cell(p, args, sid, transport, mode, conns, users):
    env = {k: v for k, v in p.env.items() if k not in ("TLS_CERT_FILE", "TLS_KEY_FILE")}
    env["JWT_SIGNING_KEY_FILE"] = p.signing_key  # the bench signs its buyers' tokens, as auth would
    cmd = [bench_binary(p), "--schedule", sid, "--seats", str(args.seats),
           "--grade", GRADE, "--buyers", str(args.buyers), "--conns", str(conns), "--mode", mode,
           "--quantity", str(args.quantity), "--db", db_url(f"sb_reservation_{ns()}"), "--users", users]
    if transport == "rest":
        cmd += ["--gateway", p.base]
    else:
        cmd += ["--grpc", f"127.0.0.1:{GRPC_BASE + 1 + SERVICES.index('reservation')}"]
    before = cpu_ticks()
    sys.stderr.flush()
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)  # its stderr: ours, as it goes
    after = cpu_ticks()
    if not r.stdout.strip():
        raise SystemExit(f"bench-flash-sale failed ({r.returncode}) with no result")
    res = json.loads(r.stdout)
    # CPU microseconds per attempt over the whole program run (its setup
    # included: the token signing is the bench's own CPU, not counted here)
    hz = os.sysconf("SC_CLK_TCK")
    res["cpu_us_per_attempt"] = {k: (after[k] - before[k]) * 1e6 / hz / args.buyers for k in after}
    print(json.dumps(res), file=sys.stderr)
    if r.returncode != 0:
        print(f"flash_sale: {transport} {mode} C={conns}: CHECK FAILED (see above)", file=sys.stderr)
    return res


def run_pgbench(p, args, sid, mode, clients=64):
    env = dict(os.environ, BENCH_FLASH_SALE=bench_binary(p))
    out = subprocess.run([os.path.join(ROOT, "bench", "flash_sale_pgbench.sh"), db_url(f"sb_reservation_{ns()}"),
                          sid, GRADE, str(args.seats), str(args.buyers), str(args.quantity), str(clients), mode],
                         capture_output=True, text=True, env=env)
    sys.stderr.write(out.stderr)
    if not out.stdout.strip():
        print(f"flash_sale: pgbench {mode} failed ({out.returncode})", file=sys.stderr)
        return None
    res = json.loads(out.stdout)
    res["ok"] = out.returncode == 0
    print(json.dumps(res), file=sys.stderr)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--buyers", type=int, default=10000)
    ap.add_argument("--seats", type=int, default=1000)
    ap.add_argument("--quantity", type=int, default=2)
    ap.add_argument("--conns", default="64,256,1024")
    ap.add_argument("--modes", default="seats,best")
    ap.add_argument("--transports", default="rest,grpc")
    ap.add_argument("--no-pgbench", action="store_true")
    ap.add_argument("--pgbench-clients", default="64,8",
                    help="pgbench connections (64: the issue's figure; 8: the service's DB_POOL_SIZE)")
    ap.add_argument("--env", action="append", default=[], help="K=V for every service")
    args = ap.parse_args()
    conns = [int(c) for c in args.conns.split(",")]
    modes = args.modes.split(",")
    transports = args.transports.split(",")
    cells = [(t, m, c) for t in transports for m in modes for c in conns]
    pg_clients = [int(c) for c in args.pgbench_clients.split(",")]
    pg_cells = [] if args.no_pgbench else [(m, c) for m in modes for c in pg_clients]
    per_run = len(cells) + len(pg_cells)
    if per_run > 100:
        raise SystemExit("more than 100 schedules per run (the performance service's limit)")

    os.environ["SB_NAMESPACE"] = NAMESPACE
    drop_bench_databases()
    env = {"LOG_LEVEL": "warn", "OUTBOX_POLL_MS": "100",
           "GATEWAY_MAX_CONNECTIONS": str(max(conns) + 64),
           # the holds of earlier cells must not expire (and emit events) while later cells run
           "HOLD_TTL_S": "86400"}
    env.update(kv.split("=", 1) for kv in args.env)
    results = {}
    pg_results = {cell: [] for cell in pg_cells}
    with Platform(["member", "auth", "performance", "reservation"], env=env) as p, \
            tempfile.NamedTemporaryFile("w", prefix="flash-users-", suffix=".txt") as users:
        _, planner = p.user("PLANNER")
        admin = p.login(ADMIN_LOGIN, ADMIN_PASSWORD)
        make_members(args.buyers, users.name)
        # warm-up, not reported: the first events of a run create the Kafka
        # topic and the first hold compiles every statement (about 2 s of
        # outbox drain that the first cell would otherwise carry)
        warm = argparse.Namespace(buyers=min(args.buyers, 100), seats=40, quantity=args.quantity)
        run_cell(p, warm, sell(p, planner, admin, 40, 1)[0], "rest", "best", 16, users.name)
        pg_schedules = []
        for run in range(args.runs):
            sids = sell(p, planner, admin, args.seats, per_run)
            for i, (t, m, c) in enumerate(cells):
                results.setdefault((t, m, c), []).append(run_cell(p, args, sids[i], t, m, c, users.name))
            pg_schedules += list(zip(sids[len(cells):], pg_cells))
    # pgbench once the services are down: its 64 connections and theirs would
    # not fit in PostgreSQL's default max_connections (100)
    for sid, (m, c) in pg_schedules:
        r = run_pgbench(p, args, sid, m, c)
        if r:
            pg_results[(m, c)].append(r)

    nruns = f"median of {args.runs} runs" if args.runs > 1 else "single run"
    print(f"\nFlash sale: {args.buyers:,} buyers, {args.seats:,} seats, {args.quantity} seats per buyer, "
          f"each buyer one attempt ({nruns}; {dt.datetime.now(dt.timezone.utc):%Y-%m-%d})\n")
    print("| path | seats | C | attempts/s | p50 ms | p95 ms | p99 ms | seats held | held twice | outbox drained (s) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    names = {"rest": "gateway REST", "grpc": "direct gRPC"}
    mode_names = {"seats": "chosen", "best": "best available"}
    failed = False
    for (t, m, c), rows in results.items():
        held = min(r["seats_held_db"] for r in rows)
        twice = "?" if any(r["held_twice_db"] < 0 for r in rows) else \
            max(r["held_twice_db"] + r["held_twice_answers"] for r in rows)
        errs = sum(r["errors"] for r in rows)
        failed |= not all(r["ok"] for r in rows)
        print(f"| {names[t]} | {mode_names[m]} | {c:,} | {median(rows, 'attempts_per_s'):,.0f} | "
              f"{median(rows, 'p50_ms'):.1f} | {median(rows, 'p95_ms'):.1f} | {median(rows, 'p99_ms'):.1f} | "
              f"{held:,} / {args.seats:,}{'' if not errs else f' ({errs} errors)'} | {twice} | "
              f"{median(rows, 'outbox_drain_s'):.2f} |")
    for (m, c), rows in pg_results.items():
        if rows:
            failed |= not all(r["ok"] for r in rows)
            held = min(r["check"]["seats_held_db"] for r in rows)
            twice = max(r["check"]["held_twice_db"] for r in rows)
            print(f"| pgbench, the hold's SQL alone | {mode_names[m]} | {c} | {median(rows, 'tps'):,.0f} | "
                  f"{median(rows, 'p50_ms'):.1f} | {median(rows, 'p95_ms'):.1f} | {median(rows, 'p99_ms'):.1f} | "
                  f"{held:,} / {args.seats:,} | {twice} | - |")
    print("\nServer CPU per attempt (µs; whole program run, medians):\n")
    parts = list(CPU_PARTS.values())
    print("| path | seats | C | " + " | ".join(parts) + " |")
    print("| --- | --- | ---: |" + " ---: |" * len(parts))
    for (t, m, c), rows in results.items():
        cells_cpu = [statistics.median(r["cpu_us_per_attempt"][k] for r in rows) for k in parts]
        print(f"| {names[t]} | {mode_names[m]} | {c:,} | " + " | ".join(f"{v:,.0f}" for v in cells_cpu) + " |")
    if failed:
        print("\nflash_sale: a check failed (seats held twice, errors, or held != expected): see stderr",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
