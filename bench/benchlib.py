"""What the benchmark runners share (bench/flash_sale.py,
bench/booking_flow.py, bench/gateway_compare.py): the namespace's databases,
psql, members made straight in the member database with access tokens
signed as auth would, and a performance made and approved through the
gateway whose seat maps are served."""
import base64
import datetime as dt
import json
import os
import statistics
import subprocess
import time
import urllib.parse
import uuid


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


def make_members(namespace, n, path=None):
    """n USER members straight into the member database of the namespace
    (no password anyone can use: the hash is not an Argon2id string; signing
    10,000 members up through Argon2id would take an hour on this machine);
    returns their ids, also written one per line into path when given."""
    ids = psql(db_url(f"sb_member_{namespace}"),
               "INSERT INTO members (user_id, login_id, password_hash, name, email, phone, role)"
               f" SELECT gen_random_uuid(), 'bench-' || i || '-' || md5(random()::text), '!bench', 'Buyer ' || i,"
               f" 'buyer' || i || '@bench.invalid', '010-0000-0000', 'USER' FROM generate_series(1, {n}) i"
               " RETURNING user_id")
    if path:
        with open(path, "w") as f:
            f.write(ids)
    return ids.split()


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_tokens(key_file, kid, user_ids, role="USER", ttl_s=3600):
    """ES256 access tokens for user_ids, signed with the platform's signing
    key as the auth service signs them (the claims of sb_jwt_issue_es256).
    Python's cryptography (Debian python3-cryptography): thousands a second,
    where the openssl CLI of tests/e2e/sbplatform.py does tens."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    with open(key_file, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    header = _b64url(json.dumps({"alg": "ES256", "typ": "JWT", "kid": kid}).encode())
    now = int(time.time())
    out = []
    for uid in user_ids:
        claims = {"iss": "showbook-auth", "aud": "showbook", "sub": uid, "role": role, "jti": str(uuid.uuid4()),
                  "iat": now, "iat_ms": now * 1000, "exp": now + ttl_s}
        signing_input = f"{header}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        out.append(f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}")
    return out


def sell_performance(p, planner, admin, seats, n_schedules, grade="R", price=50000, timeout=120, grades=None):
    """An approved performance of n_schedules schedules of `seats` seats of
    one grade (or of grades, a list of grade names, `seats` each); returns
    (the performance as created, its schedule ids) once every seat map is
    served."""
    body = {"title": "Bench", "venue": "Arena", "category": "BENCH", "runningMinutes": 120,
            "schedules": [{"startsAt": when(30 + i)} for i in range(n_schedules)],
            "grades": [{"grade": g, "price": price, "seatCount": seats} for g in (grades or [grade])]}
    st, perf, _ = p.call("POST", "/performances", body, token=planner["accessToken"])
    assert st == 201, (st, perf)
    st, r, _ = p.call("POST", f"/performances/{perf['performanceId']}/approve", {"reason": "reviewed"}, token=admin["accessToken"])
    assert st == 200, (st, r)
    sids = [s["scheduleId"] for s in perf["schedules"]]
    deadline = time.time() + timeout
    for sid in sids:
        while p.call("GET", f"/schedules/{sid}/seats")[0] != 200:
            if time.time() > deadline:
                raise SystemExit(f"schedule {sid} not bookable after {timeout} s")
            time.sleep(0.1)
    return perf, sids


def sell(p, planner, admin, seats, n_schedules, grade="R", price=50000, timeout=120):
    """sell_performance's schedule ids (one grade)."""
    return sell_performance(p, planner, admin, seats, n_schedules, grade, price, timeout)[1]


def median(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None and r[key] >= 0]
    return statistics.median(vals) if vals else float("nan")


def save_output(path, cmd):
    """Runs cmd and writes its stdout, then its stderr, to path (diagnostics
    the stall soaks take while a stall lasts)."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    with open(path, "w") as f:
        f.write(r.stdout + "\n--- stderr ---\n" + r.stderr)
