#!/usr/bin/env python3
"""Booking-flow benchmark runner (issue 11): brings up the whole platform
with sb-paysim (tests/e2e/sbplatform.py, the e2e ports: run it under the
test lock) in namespace "bookflow" (databases sb_<service>_bookflow, dropped
first; topics sb.<x>.bookflow), has a planner register one performance of
--bookings seats per run and an admin approve it, then runs
bench/booking_flow.c (build/bench/bench-booking-flow): N bookings at C
connections through the gateway, each hold -> POST /payments (card 4242...,
Idempotency-Key) -> GET /reservations/{id} until CONFIRMED. Prints a
markdown row of the medians over the runs (every run's JSON on stderr).

    eval "$(deploy/local/infra.sh up)"; export DATABASE_URL REDIS_URL KAFKA_BROKERS
    flock /tmp/sb-test.lock python3 bench/booking_flow.py [--runs 3] [--bookings 1000] [--conns 64]
        [--poll-ms 10] [--env K=V ...]

`make bench-booking` runs it with the defaults (BENCH_BOOKING_ARGS adds options).
"""
import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, Platform  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import drop_databases, median, sell  # noqa: E402

NAMESPACE = "bookflow"


def run(p, args, sid):
    st, m, _ = p.call("GET", f"/schedules/{sid}/seats")
    assert st == 200, (st, m)
    env = {k: v for k, v in p.env.items() if k not in ("TLS_CERT_FILE", "TLS_KEY_FILE")}
    env["JWT_SIGNING_KEY_FILE"] = p.signing_key  # the bench signs its buyers' tokens, as auth would
    with tempfile.NamedTemporaryFile("w", prefix="booking-seats-", suffix=".txt") as seats:
        seats.write("".join(s["seatId"] + "\n" for s in m["seats"]))
        seats.flush()
        cmd = [os.environ.get("BENCH_BOOKING_FLOW") or os.path.join(p.build, "bench", "bench-booking-flow"),
               "--gateway", p.base, "--schedule", sid, "--seats-file", seats.name,
               "--bookings", str(args.bookings), "--conns", str(args.conns), "--poll-ms", str(args.poll_ms)]
        sys.stderr.flush()
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if not r.stdout.strip():
        raise SystemExit(f"bench-booking-flow failed ({r.returncode}) with no result")
    res = json.loads(r.stdout)
    res["ok"] = r.returncode == 0
    print(json.dumps(res), file=sys.stderr)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--bookings", type=int, default=1000)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--poll-ms", type=int, default=10)
    ap.add_argument("--env", action="append", default=[], help="K=V for every service")
    args = ap.parse_args()
    os.environ["SB_NAMESPACE"] = os.environ.get("SB_NAMESPACE") or NAMESPACE
    drop_databases(os.environ["SB_NAMESPACE"])
    env = {"LOG_LEVEL": "warn", "GATEWAY_MAX_CONNECTIONS": str(args.conns + 64), "HOLD_TTL_S": "86400",
           "GATEWAY_TIMEOUT_MS": "30000"}
    env.update(kv.split("=", 1) for kv in args.env)
    rows = []
    with Platform(env=env) as p:
        _, planner = p.user("PLANNER")
        admin = p.login(ADMIN_LOGIN, ADMIN_PASSWORD)
        # warm-up, not reported: topics, consumer groups, statements
        warm = argparse.Namespace(bookings=min(50, args.bookings), conns=min(16, args.conns), poll_ms=args.poll_ms)
        run(p, warm, sell(p, planner, admin, warm.bookings, 1, price=55000)[0])
        for _ in range(args.runs):
            rows.append(run(p, args, sell(p, planner, admin, args.bookings, 1, price=55000)[0]))
    nruns = f"median of {args.runs} runs" if args.runs > 1 else "single run"
    print(f"\nBooking flow: {args.bookings:,} bookings (hold -> pay -> CONFIRMED), {args.conns} connections "
          f"({nruns}; {dt.datetime.now(dt.timezone.utc):%Y-%m-%d})\n")
    print("| C | bookings/s | p50 ms | p99 ms | hold p50 ms | pay p50 ms | polls per booking | errors |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {args.conns} | {median(rows, 'bookings_per_s'):,.1f} | {median(rows, 'p50_ms'):.1f} | "
          f"{median(rows, 'p99_ms'):.1f} | {median(rows, 'hold_p50_ms'):.1f} | {median(rows, 'pay_p50_ms'):.1f} | "
          f"{median(rows, 'polls_per_booking'):.1f} | {sum(r['errors'] for r in rows)} |")
    if not all(r["ok"] for r in rows):
        print("\nbooking_flow: some bookings failed: see stderr", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
