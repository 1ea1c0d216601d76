"""What the benchmark runners share (bench/flash_sale.py,
bench/booking_flow.py): the namespace's databases, psql, and a performance
made and approved through the gateway whose seat maps are served."""
import datetime as dt
import os
import statistics
import subprocess
import time
import urllib.parse


def db_url(name):
    """DATABASE_URL with its database replaced by name."""
    u = urllib.parse.urlsplit(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


def psql(url, sql):
    return subprocess.run(["psql", url, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                          capture_output=True, text=True).stdout


def drop_databases(namespace):
    """Drops every service database of the namespace (sb_<service>_<namespace>)."""
    for db in psql(db_url("postgres"),
                   f"SELECT datname FROM pg_database WHERE datname LIKE 'sb\\_%\\_{namespace}'").split():
        psql(db_url("postgres"), f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def when(days):
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def sell(p, planner, admin, seats, n_schedules, grade="R", price=50000, timeout=120):
    """An approved performance of n_schedules schedules of `seats` seats of
    one grade; returns the schedule ids once every seat map is served."""
    body = {"title": "Bench", "venue": "Arena", "category": "BENCH", "runningMinutes": 120,
            "schedules": [{"startsAt": when(30 + i)} for i in range(n_schedules)],
            "grades": [{"grade": grade, "price": price, "seatCount": seats}]}
    st, perf, _ = p.call("POST", "/performances", body, token=planner["accessToken"])
    assert st == 201, (st, perf)
    st, r, _ = p.call("POST", f"/performances/{perf['performanceId']}/approve", {}, token=admin["accessToken"])
    assert st == 200, (st, r)
    sids = [s["scheduleId"] for s in perf["schedules"]]
    deadline = time.time() + timeout
    for sid in sids:
        while p.call("GET", f"/schedules/{sid}/seats")[0] != 200:
            if time.time() > deadline:
                raise SystemExit(f"schedule {sid} not bookable after {timeout} s")
            time.sleep(0.1)
    return sids


def median(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None and r[key] >= 0]
    return statistics.median(vals) if vals else float("nan")
