#!/usr/bin/env python3
"""Demo data for `make run` (issue 4): a planner with a few approved
performances, so `curl localhost:8080/reservations` shows something on a new
machine. Idempotent: does nothing while the demo planner still has an approved
performance with a future schedule. Goes through the public REST API only.

usage: scripts/seed.py [base-url]   (admin from BOOTSTRAP_ADMIN_LOGIN/PASSWORD)
"""
import datetime as dt
import json
import os
import sys
import time
import urllib.error
import urllib.request

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
PLANNER = {"loginId": "demo-planner", "password": "demo-planner-pass", "name": "Demo Planner",
           "email": "planner@demo.showbook", "phone": "010-0000-0001", "role": "PLANNER"}
USER = {"loginId": "demo-user", "password": "demo-user-pass", "name": "Demo User",
        "email": "user@demo.showbook", "phone": "010-0000-0002", "role": "USER"}


def call(method, path, body=None, token=None):
    req = urllib.request.Request(BASE + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def login(login_id, password):
    st, body = call("POST", "/login", {"loginId": login_id, "password": password})
    if st != 200:
        raise SystemExit(f"seed: login {login_id} failed: {st} {body}")
    return body


def at(days, hour):
    d = dt.datetime.now(dt.timezone.utc).replace(hour=hour, minute=0, second=0, microsecond=0)
    return (d + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


SHOWS = [
    {"title": "The Phantom of the Opera", "category": "MUSICAL", "venue": "Charlotte Theater",
     "runningMinutes": 150, "description": "Demo musical.",
     "schedules": [{"startsAt": at(7, 10)}, {"startsAt": at(8, 10)}, {"startsAt": at(14, 5)}],
     "grades": [{"grade": "VIP", "price": 170000, "seatCount": 40}, {"grade": "R", "price": 140000, "seatCount": 80},
                {"grade": "S", "price": 110000, "seatCount": 120}]},
    {"title": "Seoul Philharmonic: Mahler 5", "category": "CONCERT", "venue": "Lotte Concert Hall",
     "runningMinutes": 120, "description": "Demo concert.",
     "schedules": [{"startsAt": at(10, 11)}],
     "grades": [{"grade": "R", "price": 120000, "seatCount": 60}, {"grade": "A", "price": 60000, "seatCount": 100}]},
    {"title": "Hamlet", "category": "PLAY", "venue": "Myeongdong Theater", "runningMinutes": 165,
     "description": "Demo play.",
     "schedules": [{"startsAt": at(5, 11)}, {"startsAt": at(6, 6)}],
     "grades": [{"grade": "R", "price": 70000, "seatCount": 50}, {"grade": "S", "price": 50000, "seatCount": 50}]},
]


def main():
    for who in (PLANNER, USER):
        st, body = call("POST", "/signup", who)
        if st not in (201, 409):
            raise SystemExit(f"seed: signup {who['loginId']}: {st} {body}")
    planner = login(PLANNER["loginId"], PLANNER["password"])
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    st, body = call("GET", f"/performances?plannerId={planner['userId']}&status=APPROVED&from={now}",
                    token=planner["accessToken"])
    if st == 200 and body.get("performances"):
        print(f"seed: demo data present ({len(body['performances'])} bookable demo performances)", file=sys.stderr)
        return
    admin = login(os.environ.get("BOOTSTRAP_ADMIN_LOGIN", "admin"),
                  os.environ.get("BOOTSTRAP_ADMIN_PASSWORD", "admin-change-me"))
    schedules = []
    for show in SHOWS:
        st, p = call("POST", "/performances", show, token=planner["accessToken"])
        if st != 201:
            raise SystemExit(f"seed: create {show['title']}: {st} {p}")
        schedules += [s["scheduleId"] for s in p["schedules"]]
        st, p = call("POST", f"/performances/{p['performanceId']}/approve", {"reason": "reviewed"}, token=admin["accessToken"])
        if st != 200:
            raise SystemExit(f"seed: approve: {st} {p}")
    # bookable once the reservation service has built the seat maps from the events
    deadline = time.time() + 30
    while time.time() < deadline:
        if all(call("GET", f"/schedules/{sid}/seats")[0] == 200 for sid in schedules):
            print(f"seed: {len(SHOWS)} demo performances approved and bookable "
                  f"(planner {PLANNER['loginId']}/{PLANNER['password']}, user {USER['loginId']}/{USER['password']})",
                  file=sys.stderr)
            return
        time.sleep(0.2)
    raise SystemExit("seed: performances approved but not bookable after 30 s")


if __name__ == "__main__":
    main()
