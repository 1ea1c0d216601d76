#!/usr/bin/env python3
"""Approval -> bookable latency (issue 4): a planner registers a performance,
an admin approves it (performance service commits + outbox), and we poll
GET /schedules/{id}/seats until the reservation service, fed by the
performance.approved event over Kafka, serves the seat map. Prints the median,
p90 and max over N approvals (each 2 schedules x 300 seats), approvals spaced
by a random pause so they do not run in step with the relay's polling.

    eval "$(deploy/local/infra.sh up)"; export DATABASE_URL REDIS_URL KAFKA_BROKERS
    python3 bench/catalog.py [n=20]
"""
import datetime as dt
import os
import random
import statistics
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, Platform  # noqa: E402


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    when = lambda d: (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ")
    poll = os.environ.get("OUTBOX_POLL_MS", "100")  # the default of make run
    with Platform(["member", "auth", "performance", "reservation"], env={"LOG_LEVEL": "warn", "OUTBOX_POLL_MS": poll}) as p:
        _, pt = p.user("PLANNER")
        admin = p.login(ADMIN_LOGIN, ADMIN_PASSWORD)
        lat = []
        for i in range(n):
            body = {"title": f"Bench {i}", "venue": "Hall", "category": "BENCH", "runningMinutes": 90,
                    "schedules": [{"startsAt": when(30)}, {"startsAt": when(31)}],
                    "grades": [{"grade": "VIP", "price": 100000, "seatCount": 100},
                               {"grade": "R", "price": 50000, "seatCount": 200}]}
            st, perf, _ = p.call("POST", "/performances", body, token=pt["accessToken"])
            assert st == 201, perf
            sid = perf["schedules"][0]["scheduleId"]
            time.sleep(random.uniform(0, 0.2))  # do not run in step with the relay's polling
            t0 = time.perf_counter()
            st, r, _ = p.call("POST", f"/performances/{perf['performanceId']}/approve", {"reason": "reviewed"}, token=admin["accessToken"])
            assert st == 200, r
            while p.call("GET", f"/schedules/{sid}/seats")[0] != 200:
                if time.perf_counter() - t0 > 30:
                    raise SystemExit("not bookable after 30 s")
                time.sleep(0.002)
            lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    print(f"approval -> bookable over {n} approvals (OUTBOX_POLL_MS={p.env['OUTBOX_POLL_MS']}): "
          f"median {statistics.median(lat):.0f} ms, p90 {lat[int(len(lat) * 0.9) - 1]:.0f} ms, max {lat[-1]:.0f} ms")


if __name__ == "__main__":
    main()
