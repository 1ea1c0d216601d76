"""Helpers the booking tests share: a performance made and approved through
the gateway (as test_catalog.py does), tokens for many buyers minted with the
platform's signing key (no sign-up per buyer), the seat map, and direct reads
of the reservation service's database for what the API does not show (the
outbox)."""
import base64
import datetime as dt
import os
import secrets
import subprocess
import time
import uuid


def future(days, hours=0):
    t = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days, hours=hours)
    return t.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def approved_show(p, planner_token, admin_token, grades=None, schedules=1, timeout=30):
    """Creates and approves a performance; waits (up to timeout s) for its
    seat maps. Returns (performance, [scheduleId, ...])."""
    body = {"title": f"Booking {secrets.token_hex(3)}", "description": "e2e", "venue": "Hall B",
            "category": "CONCERT", "runningMinutes": 100,
            "schedules": [{"startsAt": future(20 + i)} for i in range(schedules)],
            "grades": grades or [{"grade": "VIP", "price": "150000", "seatCount": 10},
                                 {"grade": "R", "price": 90000, "seatCount": 40}]}
    st, perf, _ = p.call("POST", "/performances", body, token=planner_token)
    assert st == 201, (st, perf)
    st, b, _ = p.call("POST", f"/performances/{perf['performanceId']}/approve", {"reason": "reviewed"}, token=admin_token)
    assert st == 200, (st, b)
    sids = [s["scheduleId"] for s in perf["schedules"]]
    for sid in sids:
        wait_for(lambda: p.call("GET", f"/schedules/{sid}/seats")[0] == 200, timeout, f"seat map of {sid}")
    return perf, sids


def wait_for(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


def seat_status(p, sid):
    st, m, _ = p.call("GET", f"/schedules/{sid}/seats")
    assert st == 200, (st, m)
    return {s["seatId"]: s["status"] for s in m["seats"]}


# The public seat map is a cached read (1 s max age, proto/reservation.proto):
# a change the gateway did not carry (an event the reservation service
# handled: a payment, a refund, a job's expiry) shows within that bound.
CACHE_LAG_S = 1.0


def seat_status_within_lag(p, sid, seat, want, slack=1.0):
    """Asserts that the map shows seat as want within the cached reads' lag
    bound (plus slack for the machine); returns the last map."""
    deadline = time.monotonic() + CACHE_LAG_S + slack
    while True:
        m = seat_status(p, sid)
        if m[seat] == want or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert m[seat] == want, (seat, m[seat], want)
    return m


def mint(p, role="USER"):
    """A fresh member id and an access token for it, signed as auth signs."""
    uid = str(uuid.uuid4())
    now = int(time.time())
    tok = p.token({"sub": uid, "role": role, "jti": str(uuid.uuid4()), "iat": now, "exp": now + 3600,
                   "iss": "showbook-auth", "aud": "showbook"})
    return uid, tok


def psql(sql, service="reservation"):
    """Rows of sql on a service's test database (the reservation service's
    by default), as lists of text (psql -At, fields split on |)."""
    db = f"sb_{service}_{os.environ.get('SB_NAMESPACE', 'test')}"
    url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    out = subprocess.run(["psql", f"{url.rsplit('/', 1)[0]}/{db}", "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                         check=True, capture_output=True, text=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


# ---- events: protobuf by hand (the e2e interpreter may lack the protobuf
# package), POST /events/{service}, the outbox ----

def pb(*fields):
    """A protobuf message from (field number, value) pairs: str and bytes
    length-delimited, bool and int as varints (proto3 int64/bool)."""
    out = bytearray()
    for num, v in fields:
        if isinstance(v, (str, bytes)):
            data = v.encode() if isinstance(v, str) else v
            out += _varint(num << 3 | 2) + _varint(len(data)) + data
        else:
            out += _varint(num << 3) + _varint(int(v) & (2**64 - 1))
    return bytes(out)


def _varint(n):
    b = bytearray()
    while True:
        b.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(b)


def pb_fields(data):
    """{field number: [values]} of a protobuf message: ints for varints, bytes
    for length-delimited fields (decode them again for sub-messages)."""
    fields, i = {}, 0
    while i < len(data):
        key, i = _read_varint(data, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(data, i)
        elif wire == 2:
            n, i = _read_varint(data, i)
            v, i = data[i:i + n], i + n
        elif wire == 1:
            v, i = data[i:i + 8], i + 8
        elif wire == 5:
            v, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        fields.setdefault(num, []).append(v)
    return fields


def _read_varint(data, i):
    n = shift = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def deliver(p, admin_token, service, type_, aggregate, payload, event_id=None, reason="delivered by a test"):
    """POST /events/{service}: one event through the service's inbox as if
    from Kafka, with the admin's reason. Returns (status, body, the event id)."""
    event_id = event_id or str(uuid.uuid4())
    st, body, _ = p.call("POST", f"/events/{service}",
                         {"eventId": event_id, "type": type_, "aggregateId": aggregate,
                          "payload": base64.b64encode(payload).decode(), "reason": reason}, token=admin_token)
    return st, body, event_id


def outbox(aggregate):
    """[(type, {field: [values]} of the payload)] the reservation service wrote
    for aggregate, oldest first."""
    rows = psql(f"SELECT type, encode(envelope, 'hex') FROM sb_outbox WHERE aggregate_id = '{aggregate}'"
                " ORDER BY id")
    return [(t, pb_fields(pb_fields(bytes.fromhex(h))[7][0])) for t, h in rows]
