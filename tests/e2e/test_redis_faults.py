#!/usr/bin/env python3
"""Redis faults against revocation (issue 14): a Redis that restarts empty
must not bring a revoked token back, and a Redis that stalls must make
authenticated requests fail fast with 503, never hang.

The platform (member, auth, gateway) runs against a PRIVATE redis-server
(sbservers.PrivateRedis: a free port, no persistence, --save ''
--appendonly no, as on many hosts), so it can be killed, restarted empty and
SIGSTOPped without touching the shared Redis; it is killed at the end
whatever happens (close(): tearDownModule, atexit, SIGTERM; an orphan left
by a SIGKILLed test is reaped by the next private server).

What is checked, through the gateway like a client:
  - logout, withdrawal and password change: the tokens they revoked are
    refused (401) before a Redis restart, never accepted (200) after it:
    503 while the denylist is incomplete, 401 once auth has rebuilt it from
    PostgreSQL; a valid token gets 200 again at the same time
  - Redis stopped (SIGSTOP): every authenticated request sent once the
    local denylists' lease has run out (LEASE_BOUND_S) answers 503 within
    STALL_BOUND_S; after SIGCONT requests are served again
The times measured are printed (restart -> 401 again; stalled request
latencies; SIGCONT -> 200). The whole test takes about 20 s."""
import base64
import json
import os
import subprocess
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from sbplatform import Platform  # noqa: E402
from sbservers import PrivateRedis  # noqa: E402

REDIS_TIMEOUT_MS = 500       # the platform's default (sb/redis.h); set explicitly below
LEASE_BOUND_S = 1.0          # Redis stalled -> the local denylists stop answering (sb/denylist.h)
STALL_BOUND_S = 3.0          # generous: REDIS_TIMEOUT_MS x a few, on a loaded 2-core box
REBUILD_BOUND_S = 20.0       # restart -> revoked tokens refused with 401 again (expect ~1-2 s)
# revocations added to the table before the first restart: more than one
# rebuild batch (1000); set higher by hand to measure a large rebuild
BULK = int(os.environ.get("SB_FAULT_BULK_REVOCATIONS", "2500"))

P = None
REDIS = None


def setUpModule():
    global P, REDIS
    REDIS = PrivateRedis().__enter__()
    try:
        P = Platform(["member", "auth"], env={
            "REDIS_URL": f"redis://127.0.0.1:{REDIS.port}",
            "REDIS_TIMEOUT_MS": str(REDIS_TIMEOUT_MS),
            "LOGIN_RATE_LIMIT": "1000",
        }).__enter__()
    except BaseException:
        REDIS.close()
        raise


def tearDownModule():
    try:
        if P:
            REDIS.cont()
            P.__exit__(None, None, None)
    finally:
        REDIS.close()


def auth_sql(sql):
    """Runs sql in the auth service's database (psql); its output."""
    url = urllib.parse.urlsplit(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ns = P.env.get("SB_NAMESPACE", "")
    url = url._replace(path="/sb_auth" + (f"_{ns}" if ns else ""))
    return subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", urllib.parse.urlunsplit(url),
                           "-c", sql], check=True, capture_output=True, text=True).stdout.strip()


class RedisFaults(unittest.TestCase):
    def get_member(self, user_id, token):
        st, body, _ = P.call("GET", f"/members/{user_id}", token=token)
        return st, body

    def user(self):
        m, pw = P.signup()
        return m, pw, P.login(m["loginId"], pw)

    def wait_status(self, user_id, token, want, timeout=30):
        """Polls until GET /members/{user_id} answers want; returns the time."""
        deadline = time.time() + timeout
        while True:
            st, body = self.get_member(user_id, token)
            if st == want:
                return time.time()
            self.assertLess(time.time(), deadline, f"still {st} {body}, want {want}")
            time.sleep(0.1)

    def restart_and_watch(self, revoked, valid):
        """Restarts Redis empty; then polls every revoked (user id, token) and
        every valid one until all revoked answer 401 and all valid 200.
        A revoked token answering 200 at any point fails. A revoked token's
        401 alone does not show the rebuild finished (its entry may be loaded
        before the marker is set): a valid token's 200 does, so valid must
        not be empty. Returns the seconds from the restart until both held,
        and the statuses seen."""
        self.assertTrue(valid)
        REDIS.restart_empty()
        self.assertEqual(REDIS.command("DBSIZE"), "0", "the restarted Redis is not empty")
        t0 = time.time()
        seen = {}
        while True:
            done = True
            for uid, tok in revoked:
                st, body = self.get_member(uid, tok)
                seen[st] = seen.get(st, 0) + 1
                self.assertNotEqual(st, 200, f"a revoked token was accepted after the Redis restart: {body}")
                self.assertIn(st, (401, 503), body)
                if st == 503:
                    self.assertIn("try again", body["error"]["message"])
                done = done and st == 401
            for uid, tok in valid:
                st, body = self.get_member(uid, tok)
                self.assertIn(st, (200, 503), body)
                done = done and st == 200
            if done:
                return time.time() - t0, seen
            self.assertLess(time.time() - t0, REBUILD_BOUND_S,
                            f"denylist not rebuilt {REBUILD_BOUND_S}s after the restart (seen {seen})")
            time.sleep(0.02)

    def test_1_logout_survives_a_redis_restart(self):
        m, _, t = self.user()
        other, _, ot = self.user()
        self.assertEqual(self.get_member(m["userId"], t["accessToken"])[0], 200)
        st, body, _ = P.call("POST", "/logout", {"refreshToken": t["refreshToken"]}, token=t["accessToken"])
        self.assertEqual(st, 200, body)
        deadline = time.time() + 1.0  # refused within a second (sb/denylist.h)
        while (st := self.get_member(m["userId"], t["accessToken"])[0]) == 200:
            self.assertLess(time.time(), deadline, "logged-out token still accepted after 1 s")
        self.assertEqual(st, 401)
        # the revocation is a row in PostgreSQL: what the rebuild reads
        jti = json.loads(base64.urlsafe_b64decode(t["accessToken"].split(".")[1] + "=="))["jti"]
        self.assertEqual(auth_sql(f"SELECT count(*) FROM revocations WHERE kind = 'token' AND subject = '{jti}'"), "1")
        # more revocations than one rebuild batch (1000), one of them expired;
        # subjects of this run only (the database may hold an earlier run's)
        b = f"bulk{os.urandom(4).hex()}-"
        auth_sql(f"INSERT INTO revocations (kind, subject, reason, expires_at) SELECT 'token', '{b}' || g,"
                 f" 'logout', now() + interval '10 minutes' FROM generate_series(1, {BULK}) g;"
                 "INSERT INTO revocations (kind, subject, reason, expires_at)"
                 f" VALUES ('token', '{b}expired', 'logout', now() - interval '1 second')")
        took, seen = self.restart_and_watch([(m["userId"], t["accessToken"])],
                                            [(other["userId"], ot["accessToken"])])
        self.assertEqual(REDIS.command("GET", f"sb:deny:{b}{BULK}"), "1")
        self.assertEqual(REDIS.command("GET", f"sb:deny:{b}1"), "1")
        pttl = int(REDIS.command("PTTL", f"sb:deny:{b}{BULK // 2}"))
        self.assertTrue(500_000 < pttl <= 600_000, pttl)
        self.assertIsNone(REDIS.command("GET", f"sb:deny:{b}expired"))
        print(f"\nlogout: restart -> revoked token 401 and valid token 200 again after {took:.2f}s "
              f"({BULK + 1} revocations in the table; statuses while rebuilding: {seen})", file=sys.stderr)
        # the refresh token stays spent too (PostgreSQL), and a second restart changes nothing
        st, _, _ = P.call("POST", "/token/refresh", {"refreshToken": t["refreshToken"]})
        self.assertEqual(st, 401)
        took, seen = self.restart_and_watch([(m["userId"], t["accessToken"])],
                                            [(other["userId"], ot["accessToken"])])
        print(f"logout, second restart: 401 again after {took:.2f}s", file=sys.stderr)

    def test_2_withdrawal_and_password_change_survive_a_redis_restart(self):
        gone, _, gt = self.user()
        st, body, _ = P.call("DELETE", f"/members/{gone['userId']}", token=gt["accessToken"])
        self.assertEqual(st, 200, body)
        changer, pw, old = self.user()
        st, body, _ = P.call("PUT", f"/members/{changer['userId']}",
                             {"currentPassword": pw, "newPassword": "brand-new-pass-2"}, token=old["accessToken"])
        self.assertEqual(st, 200, body)
        new = P.login(changer["loginId"], "brand-new-pass-2")
        # both revocations arrive through Kafka (member.withdrawn, member.password_changed)
        self.wait_status(gone["userId"], gt["accessToken"], 401)
        self.wait_status(changer["userId"], old["accessToken"], 401)
        self.assertEqual(self.get_member(changer["userId"], new["accessToken"])[0], 200,
                         "a login right after the password change is not revoked")
        took, seen = self.restart_and_watch(
            [(gone["userId"], gt["accessToken"]), (changer["userId"], old["accessToken"])],
            [(changer["userId"], new["accessToken"])])
        print(f"\nwithdrawal + password change: restart -> 401 / 200 again after {took:.2f}s "
              f"(statuses while rebuilding: {seen})", file=sys.stderr)

    def test_3_a_stalled_redis_fails_fast_with_503(self):
        m, _, t = self.user()
        self.assertEqual(self.get_member(m["userId"], t["accessToken"])[0], 200)
        REDIS.stop()
        t_stop = time.time()
        try:
            # The local denylists (sb/denylist.h) answer until their lease
            # runs out (under a second after their last pong: no revocation
            # can be written to a stalled Redis meanwhile); a request sent
            # after that asks Redis and gets 503.
            while True:
                t0 = time.time()
                st, body = self.get_member(m["userId"], t["accessToken"])
                if st == 503:
                    break
                self.assertEqual(st, 200, body)
                self.assertLess(t0 - t_stop, LEASE_BOUND_S, "a request sent after the lease ran out was served")
                time.sleep(0.05)
            lease_took = t0 - t_stop
            times = []
            for _ in range(12):
                t0 = time.time()
                st, body = self.get_member(m["userId"], t["accessToken"])
                times.append(time.time() - t0)
                self.assertEqual(st, 503, body)
                self.assertEqual(body["error"]["code"], "UNAVAILABLE", body)
                self.assertLess(times[-1], STALL_BOUND_S, f"request took {times[-1]:.2f}s with Redis stalled")
                time.sleep(0.15)
            # anonymous paths that need Redis (the login rate limit) fail fast too
            t0 = time.time()
            st, body, _ = P.call("POST", "/login", {"loginId": m["loginId"], "password": "whatever-1"})
            login_took = time.time() - t0
            self.assertEqual(st, 503, body)
            self.assertLess(login_took, STALL_BOUND_S)
        finally:
            REDIS.cont()
        t_cont = time.time()
        back = self.wait_status(m["userId"], t["accessToken"], 200, timeout=15)
        print(f"\nRedis stopped: local denylist lease ran out within {lease_took:.2f}s; "
              f"{len(times)} authenticated requests all 503, latency max {max(times):.3f}s "
              f"median {sorted(times)[len(times) // 2]:.3f}s (REDIS_TIMEOUT_MS={REDIS_TIMEOUT_MS}); "
              f"login 503 in {login_took:.3f}s; SIGCONT -> 200 after {back - t_cont:.2f}s", file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
