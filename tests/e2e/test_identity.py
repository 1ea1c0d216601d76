#!/usr/bin/env python3
"""Identity through the gateway, as a client sees it (issue 3): signup, login,
profile, password change, logout, refresh rotation and reuse, withdrawal,
token tampering, roles, limits, and the gateway's own endpoints.

Run by CTest (make test) with the real member, auth and gateway binaries and
the real PostgreSQL/Redis/Kafka; see sbplatform.py."""
import base64
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from sbplatform import ADMIN_BASE, ADMIN_LOGIN, ADMIN_PASSWORD, SERVICES, Platform  # noqa: E402

P = None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(claims: dict, alg="ES256", key=None, kid=None) -> str:
    """A token of exactly these claims: ES256 signed with key (a PEM private
    key file; the platform's signing key by default), HS256 keyed with the
    bytes key, or alg none; kid: the platform's current one unless given."""
    if alg == "ES256":
        return P.token(claims, key=key, header={"kid": kid} if kid else None)
    header = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": kid or P.kid}).encode())
    payload = b64url(json.dumps(claims).encode())
    if alg == "none":
        return f"{header}.{payload}."
    sig = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(sig)}"


def setUpModule():
    global P
    P = Platform(["member", "auth"], env={"LOGIN_RATE_LIMIT": "100", "HEALTH_REFRESH_MS": "200"}).__enter__()


def tearDownModule():
    P.__exit__(None, None, None)


class Identity(unittest.TestCase):
    def assertError(self, resp, status, code, msg_part=None):
        st, body, _ = resp
        self.assertEqual(st, status, body)
        self.assertIsInstance(body, dict, body)
        self.assertEqual(list(body.keys()), ["error"])
        self.assertEqual(body["error"]["code"], code, body)
        self.assertTrue(body["error"]["message"], body)
        if msg_part:
            self.assertIn(msg_part.lower(), body["error"]["message"].lower())
        return body["error"]["message"]

    # ---- signup ----
    def test_signup_returns_the_member_without_secrets(self):
        m, _ = P.signup("PLANNER")
        self.assertEqual(m["role"], "PLANNER")
        uuid.UUID(m["userId"])
        for k in ("loginId", "name", "email", "phone", "createdAt"):
            self.assertTrue(m[k], k)
        self.assertNotIn("password", json.dumps(m).lower())

    def test_signup_errors(self):
        m, _ = P.signup()
        dup = {"loginId": m["loginId"], "password": "another-pass-1", "name": "X", "email": "x@example.com",
               "phone": "010-0000-0000", "role": "USER"}
        self.assertError(P.call("POST", "/signup", dup), 409, "ALREADY_EXISTS")
        # the same login id in other case is the same account
        dup["loginId"] = m["loginId"].upper()
        self.assertError(P.call("POST", "/signup", dup), 409, "ALREADY_EXISTS")
        short = dict(dup, loginId=f"short-{secrets.token_hex(3)}", password="1234567")
        self.assertError(P.call("POST", "/signup", short), 400, "INVALID_ARGUMENT", "password")
        admin = dict(dup, loginId=f"adm-{secrets.token_hex(3)}", role="ADMIN")
        self.assertError(P.call("POST", "/signup", admin), 400, "INVALID_ARGUMENT", "role")
        self.assertError(P.call("POST", "/signup", dict(dup, role="KING")), 400, "INVALID_ARGUMENT", "role")
        self.assertError(P.call("POST", "/signup", dict(dup, shoeSize=42)), 400, "INVALID_ARGUMENT", "shoeSize")
        self.assertError(P.call("POST", "/signup", dict(dup, name=["x"])), 400, "INVALID_ARGUMENT", "name")
        self.assertError(P.call("POST", "/signup", raw=b"{not json"), 400, "INVALID_ARGUMENT")
        self.assertError(P.call("POST", "/signup", dict(short, password="long-enough-1", email="nope")),
                         400, "INVALID_ARGUMENT", "email")
        # none of those created anything: the short-password login id is still free
        st, _, _ = P.call("POST", "/signup", dict(short, password="long-enough-1"))
        self.assertEqual(st, 201)

    # ---- login ----
    def test_login_and_bad_credentials_say_the_same(self):
        m, pw = P.signup()
        t = P.login(m["loginId"], pw)
        self.assertEqual(t["tokenType"], "Bearer")
        self.assertEqual(t["userId"], m["userId"])
        self.assertEqual(t["role"], "USER")
        self.assertGreater(t["expiresIn"], 0)
        wrong = self.assertError(P.call("POST", "/login", {"loginId": m["loginId"], "password": "wrong-pass-9"}),
                                 401, "UNAUTHENTICATED")
        unknown = self.assertError(P.call("POST", "/login", {"loginId": f"ghost-{secrets.token_hex(4)}",
                                                             "password": "wrong-pass-9"}), 401, "UNAUTHENTICATED")
        self.assertEqual(wrong, unknown)

    # ---- profile ----
    def test_profile_self_other_admin(self):
        m, t = P.user()
        other, ot = P.user()
        st, body, _ = P.call("GET", f"/members/{m['userId']}", token=t["accessToken"])
        self.assertEqual(st, 200)
        self.assertEqual(body["loginId"], m["loginId"])
        self.assertError(P.call("GET", f"/members/{m['userId']}", token=ot["accessToken"]), 403, "PERMISSION_DENIED")
        self.assertError(P.call("PUT", f"/members/{m['userId']}", {"name": "Mallory"}, token=ot["accessToken"]),
                         403, "PERMISSION_DENIED")
        self.assertError(P.call("DELETE", f"/members/{m['userId']}", token=ot["accessToken"]), 403, "PERMISSION_DENIED")
        self.assertError(P.call("GET", f"/members/{m['userId']}"), 401, "UNAUTHENTICATED")
        admin = P.login(ADMIN_LOGIN, ADMIN_PASSWORD)
        self.assertEqual(admin["role"], "ADMIN")
        st, body, _ = P.call("GET", f"/members/{m['userId']}", token=admin["accessToken"])
        self.assertEqual(st, 200)
        self.assertEqual(body["userId"], m["userId"])
        # the other user's data is untouched
        st, body, _ = P.call("GET", f"/members/{m['userId']}", token=t["accessToken"])
        self.assertEqual(body["name"], m["name"])
        self.assertError(P.call("GET", "/members/not-a-uuid", token=admin["accessToken"]), 400, "INVALID_ARGUMENT")
        self.assertError(P.call("GET", f"/members/{uuid.uuid4()}", token=admin["accessToken"]), 404, "NOT_FOUND")

    def test_profile_update_and_password_change(self):
        m, pw = P.signup()
        t = P.login(m["loginId"], pw)
        tok = t["accessToken"]
        st, body, _ = P.call("PUT", f"/members/{m['userId']}", {"name": "New Name", "phone": "010-9999-0000"}, token=tok)
        self.assertEqual(st, 200, body)
        self.assertEqual(body["name"], "New Name")
        self.assertEqual(body["email"], m["email"])
        self.assertError(P.call("PUT", f"/members/{m['userId']}", {"newPassword": "brand-new-pass"}, token=tok),
                         400, "INVALID_ARGUMENT")
        self.assertError(P.call("PUT", f"/members/{m['userId']}",
                                {"currentPassword": "not-my-password", "newPassword": "brand-new-pass"}, token=tok),
                         403, "PERMISSION_DENIED")
        self.assertError(P.call("PUT", f"/members/{m['userId']}", {"currentPassword": pw, "newPassword": "short"},
                                token=tok), 400, "INVALID_ARGUMENT", "password")
        st, body, _ = P.call("PUT", f"/members/{m['userId']}",
                             {"currentPassword": pw, "newPassword": "brand-new-pass"}, token=tok)
        self.assertEqual(st, 200, body)
        self.assertError(P.call("POST", "/login", {"loginId": m["loginId"], "password": pw}), 401, "UNAUTHENTICATED")
        P.login(m["loginId"], "brand-new-pass")
        # the password change revokes the sessions opened before it (refresh tokens), asynchronously via Kafka
        deadline = time.time() + 20
        while True:
            st, body, _ = P.call("POST", "/token/refresh", {"refreshToken": t["refreshToken"]})
            if st == 401 or time.time() > deadline:
                break
            t = body  # rotated: keep following the family until the revocation lands
            time.sleep(0.2)
        self.assertEqual(st, 401, body)

    # ---- tokens ----
    def test_logout_revokes_both_tokens(self):
        m, t = P.user()
        st, _, _ = P.call("POST", "/logout", {"refreshToken": t["refreshToken"]}, token=t["accessToken"])
        self.assertEqual(st, 200)
        # refused within a second (the local denylists hear of it over Redis pub/sub: sb/denylist.h)
        deadline = time.time() + 1.0
        while (r := P.call("GET", f"/members/{m['userId']}", token=t["accessToken"]))[0] == 200:
            self.assertLess(time.time(), deadline, "logged-out token still accepted after 1 s")
        self.assertError(r, 401, "UNAUTHENTICATED")
        self.assertError(P.call("POST", "/token/refresh", {"refreshToken": t["refreshToken"]}), 401, "UNAUTHENTICATED")
        self.assertError(P.call("POST", "/logout", {"refreshToken": t["refreshToken"]}), 401, "UNAUTHENTICATED")

    def test_refresh_rotates_and_reuse_revokes_the_family(self):
        m, t1 = P.user()
        st, t2, _ = P.call("POST", "/token/refresh", {"refreshToken": t1["refreshToken"]})
        self.assertEqual(st, 200, t2)
        self.assertNotEqual(t2["refreshToken"], t1["refreshToken"])
        self.assertNotEqual(t2["accessToken"], t1["accessToken"])
        st, _, _ = P.call("GET", f"/members/{m['userId']}", token=t2["accessToken"])
        self.assertEqual(st, 200)
        # the old refresh token again: reuse -> the whole family is revoked
        self.assertError(P.call("POST", "/token/refresh", {"refreshToken": t1["refreshToken"]}), 401, "UNAUTHENTICATED")
        self.assertError(P.call("POST", "/token/refresh", {"refreshToken": t2["refreshToken"]}), 401, "UNAUTHENTICATED")
        self.assertError(P.call("POST", "/token/refresh", {"refreshToken": "garbage"}), 401, "UNAUTHENTICATED")
        # another login is a new family and works
        P.login(m["loginId"], "correct-horse-1")

    def test_tampered_none_expired_tokens_are_refused(self):
        m, t = P.user()
        now = int(time.time())
        good = {"sub": m["userId"], "role": "USER", "jti": str(uuid.uuid4()), "iat": now, "exp": now + 600,
                "iss": "showbook-auth", "aud": "showbook"}
        # a token we sign with the platform's key works: proves the others fail for their flaw alone
        st, _, _ = P.call("GET", f"/members/{m['userId']}", token=forge(good))
        self.assertEqual(st, 200)
        # another key under the platform's kid; the public key as an HMAC secret (key confusion)
        other_key = os.path.join(P.logdir, "other.key")
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-out", other_key], check=True, capture_output=True)
        with open(os.path.join(P.pki, "jwt", f"{P.kid}.pub.pem"), "rb") as f:
            public_pem = f.read()
        h, p, s = t["accessToken"].split(".")
        claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
        claims["role"] = "ADMIN"
        tampered = f"{h}.{b64url(json.dumps(claims).encode())}.{s}"
        cases = {
            "tampered": tampered,
            "alg none": forge(dict(good, role="ADMIN"), alg="none"),
            "expired": forge(dict(good, iat=now - 7200, exp=now - 3600)),
            "wrong key": forge(good, key=other_key),
            "HS256 keyed with the public key": forge(good, alg="HS256", key=public_pem),
            "unknown kid": forge(good, kid="k20000101-00000000"),
            "wrong issuer": forge(dict(good, iss="evil")),
            "wrong audience": forge(dict(good, aud="elsewhere")),
            "no jti": forge({k: v for k, v in good.items() if k != "jti"}),
            "garbage": "not.a.token",
        }
        for name, tok in cases.items():
            with self.subTest(name):
                self.assertError(P.call("GET", f"/members/{m['userId']}", token=tok), 401, "UNAUTHENTICATED")
        self.assertError(P.call("GET", f"/members/{m['userId']}", headers={"Authorization": "Basic abc"}),
                         401, "UNAUTHENTICATED")

    def test_a_token_accepted_before_is_refused_once_expired(self):
        """The gateway caches verified tokens; the expiry is checked on every use."""
        m, _ = P.user()
        now = int(time.time())
        tok = forge({"sub": m["userId"], "role": "USER", "jti": str(uuid.uuid4()), "iat": now, "exp": now + 2,
                     "iss": "showbook-auth", "aud": "showbook"})
        st, _, _ = P.call("GET", f"/members/{m['userId']}", token=tok)
        self.assertEqual(st, 200)
        time.sleep(max(0.0, now + 2.2 - time.time()))
        self.assertError(P.call("GET", f"/members/{m['userId']}", token=tok), 401, "UNAUTHENTICATED", "expired")

    def test_withdrawal(self):
        m, pw = P.signup()
        t = P.login(m["loginId"], pw)
        st, body, _ = P.call("DELETE", f"/members/{m['userId']}", token=t["accessToken"])
        self.assertEqual(st, 200, body)
        self.assertEqual(body["status"], "WITHDRAWN")
        self.assertError(P.call("POST", "/login", {"loginId": m["loginId"], "password": pw}), 401, "UNAUTHENTICATED")
        admin = P.login(ADMIN_LOGIN, ADMIN_PASSWORD)
        self.assertError(P.call("GET", f"/members/{m['userId']}", token=admin["accessToken"]), 404, "NOT_FOUND")
        # the access token issued before withdrawal stops working once auth has the event
        deadline = time.time() + 20
        while time.time() < deadline:
            st, _, _ = P.call("GET", f"/members/{m['userId']}", token=t["accessToken"])
            if st == 401:
                break
            time.sleep(0.2)
        self.assertEqual(st, 401)
        # an admin withdraws someone else, saying why (the admin audit log)
        o, _ = P.user()
        st, _, _ = P.call("DELETE", f"/members/{o['userId']}?reason=spam%20account", token=admin["accessToken"])
        self.assertEqual(st, 200)

    def test_authorize_endpoint(self):
        m, t = P.user()
        st, body, _ = P.call("POST", "/auth", {"token": t["accessToken"], "action": f"GET /members/{m['userId']}"})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["principal"], m["userId"])
        self.assertEqual(body["role"], "USER")
        self.assertTrue(body["allowed"])
        st, body, _ = P.call("POST", "/auth", {"token": t["accessToken"], "action": "POST /performances/x/approve"})
        self.assertEqual(st, 200, body)
        self.assertFalse(body["allowed"])
        self.assertError(P.call("POST", "/auth", {"token": "x.y.z", "action": "GET /reservations"}), 401,
                         "UNAUTHENTICATED")
        self.assertError(P.call("POST", "/auth", {"token": t["accessToken"], "action": "nonsense"}), 400,
                         "INVALID_ARGUMENT")

    # ---- gateway limits and endpoints ----
    def test_limits_and_unknown_paths(self):
        st, body, _ = P.call("POST", "/signup", raw=b'{"name":"' + b"a" * (1 << 20) + b'"}')
        self.assertEqual(st, 413, body)
        self.assertError(P.call("GET", "/no/such/path"), 404, "NOT_FOUND")
        st, body, _ = P.call("PATCH", "/signup", {})
        self.assertEqual(st, 405)
        st, body, hdrs = P.call("POST", "/login", {"loginId": "a", "password": "b"},
                                headers={"X-Trace-Id": "e2e-trace-123"})
        self.assertEqual(hdrs.get("X-Trace-Id"), "e2e-trace-123")
        # the trace id reached the service (its log lines carry it)
        time.sleep(0.2)
        with open(os.path.join(P.logdir, "auth.log")) as f:
            self.assertIn("e2e-trace-123", f.read())
        # and the gateway wrote one JSON access line for it, fields at the top level
        with open(os.path.join(P.logdir, "gateway.log")) as f:
            lines = [json.loads(x) for x in f if x.startswith("{")]
        access = [x for x in lines if x.get("msg") == "access" and x.get("trace") == "e2e-trace-123"]
        self.assertEqual(len(access), 1, access)
        self.assertEqual((access[0]["method"], access[0]["path"], access[0]["status"]), ("POST", "/login", 401))
        st, body, _ = P.call("GET", "/members/x", headers={"X-Big": "b" * 70000})
        self.assertIn(st, (413, 431), body)

    def test_gateway_endpoints(self):
        st, body, _ = P.call("GET", "/healthz")
        self.assertEqual(st, 200)
        st, body, _ = P.call("GET", "/readyz")
        self.assertIn(st, (200, 503))
        # every dependency named with its state; all required at the gateway
        self.assertEqual(body["checks"]["member"], "ok", body)
        self.assertEqual(body["checks"]["auth"], "ok", body)
        self.assertEqual(body["checks"]["redis"], "ok", body)
        self.assertEqual(body["optional"], [], body)
        self.assertEqual(body["ready"], st == 200, body)
        # only member and auth run here: the gateway names the others down
        self.assertEqual(st, 503, body)
        self.assertTrue(body["checks"]["performance"].startswith("down"), body)
        for s in ("member", "auth"):  # a service: PostgreSQL and Redis required, Kafka reported
            with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN_BASE + 1 + SERVICES.index(s)}/readyz") as r:
                ready = json.load(r)
            self.assertEqual(ready["ready"], True, ready)
            self.assertEqual((ready["checks"]["postgres"], ready["checks"]["redis"]), ("ok", "ok"), ready)
            self.assertIn("kafka", ready["checks"])
            self.assertEqual(ready["optional"], ["kafka"], ready)
        st, body, _ = P.call("GET", "/metrics")
        self.assertEqual(st, 200)
        self.assertIn("sb_rpc_calls_total", body if isinstance(body, str) else json.dumps(body))
        st, doc, _ = P.call("GET", "/openapi.json")
        self.assertEqual(st, 200)
        self.assertTrue(doc["openapi"].startswith("3."))
        self.assertIn("/members/{userId}", doc["paths"])
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(doc, f)
        validator = os.environ.get("SB_OPENAPI_VALIDATOR")
        if validator:
            r = subprocess.run(["node", validator, f.name], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_dead_letters_listed_and_replayed_by_admins_only(self):
        """A refused event (POST /events/auth) is a dead letter an admin lists
        at GET /admin/dead-letters/auth; its replay is refused with the reason
        while the stored event is still bad, and the row stays."""
        admin = P.login(ADMIN_LOGIN, ADMIN_PASSWORD)["accessToken"]
        _, ut = P.user("USER")
        event_id = str(uuid.uuid4())
        # member.password_changed without a user id: auth's handler refuses it
        st, body, _ = P.call("POST", "/events/auth", {"eventId": event_id, "type": "member.password_changed",
                                                       "aggregateId": "x", "payload": "", "reason": "test"},
                             token=admin)
        self.assertEqual(st, 400, body)
        st, body, _ = P.call("GET", "/admin/dead-letters/auth?unreplayed=true&pageSize=100", token=admin)
        self.assertEqual(st, 200, body)
        mine = [d for d in body.get("deadLetters", []) if d.get("eventId") == event_id]
        self.assertEqual(len(mine), 1, body)
        dl = mine[0]
        self.assertEqual((dl["type"], dl["source"]), ("member.password_changed", "DeliverEvent"), dl)
        self.assertIn("without a user id", dl["error"])
        self.assertFalse(dl.get("replayedAt"), dl)
        # not for users; an unknown service is 404; a service without dead letters lists none
        self.assertError(P.call("GET", "/admin/dead-letters/auth", token=ut["accessToken"]), 403,
                         "PERMISSION_DENIED")
        self.assertError(P.call("GET", "/admin/dead-letters/auth"), 401, "UNAUTHENTICATED")
        self.assertError(P.call("GET", "/admin/dead-letters/nobody", token=admin), 404, "NOT_FOUND")
        st, body, _ = P.call("GET", "/admin/dead-letters/member", token=admin)
        self.assertEqual((st, body.get("deadLetters", [])), (200, []), body)
        # replay: users refused; the stored event is still bad, so 400 with the reason, row kept
        path = f"/admin/dead-letters/auth/{dl['id']}/replay"
        why = {"reason": "handler fixed"}
        self.assertError(P.call("POST", path, why, token=ut["accessToken"]), 403, "PERMISSION_DENIED")
        # an admin says why (audited when it applies): without a reason, refused before anything runs
        for bad in (None, {}, {"reason": "  "}, {"reason": "x" * 501}):
            self.assertError(P.call("POST", path, bad, token=admin), 400, "INVALID_ARGUMENT", "reason")
        msg = self.assertError(P.call("POST", path, why, token=admin), 400, "FAILED_PRECONDITION",
                               "still cannot be handled")
        self.assertIn("without a user id", msg)
        st, body, _ = P.call("GET", "/admin/dead-letters/auth?unreplayed=true&pageSize=100", token=admin)
        again = [d for d in body.get("deadLetters", []) if d.get("eventId") == event_id]
        self.assertEqual(len(again), 1, body)
        self.assertEqual(again[0]["replayAttempts"], 1, again)
        self.assertError(P.call("POST", "/admin/dead-letters/auth/987654321/replay", why, token=admin), 404,
                         "NOT_FOUND")
        # the service's gauges (the health refresher, HEALTH_REFRESH_MS=200 here)
        port = ADMIN_BASE + 1 + SERVICES.index("auth")
        deadline = time.time() + 30
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
                text = r.read().decode()
            values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
            done = float(values.get("sb_dead_letters", "0")) >= 1 and "# TYPE sb_consumer_lag gauge" in text
            if done or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertGreaterEqual(float(values["sb_dead_letters"]), 1, text)
        self.assertEqual(values["sb_kafka_broker_up"], "1", text)
        self.assertIn("sb_outbox_unpublished", values)
        self.assertIn("sb_outbox_oldest_unpublished_age_seconds", values)
        self.assertIn("# TYPE sb_consumer_lag gauge", text)

    def test_zz_login_rate_limit(self):
        """Runs last: after LOGIN_RATE_LIMIT attempts a minute from one IP, /login answers 429."""
        codes = []
        for _ in range(250):
            st, body, _ = P.call("POST", "/login", {"loginId": "nobody-here", "password": "x" * 8})
            codes.append(st)
            if st == 429:
                self.assertEqual(body["error"]["code"], "RESOURCE_EXHAUSTED")
                break
        self.assertEqual(codes[-1], 429, codes[-5:])
        self.assertTrue(all(c == 401 for c in codes[:-1]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
