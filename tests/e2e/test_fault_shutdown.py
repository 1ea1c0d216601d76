#!/usr/bin/env python3
"""Fault test (issue 14): SIGTERM under load drops nothing.

1. The gateway, under 32 client threads on kept-alive connections doing
   authenticated GETs: /readyz turns 503 first while requests are still
   answered (SHUTDOWN_DELAY_MS), then every request is either answered 200 or
   never sent (the connection refused, or closed before the request was
   written); none is cut off mid-flight, none is a 499; the gateway exits 0.
2. A backend (member, 2 gRPC workers) under 16 clients logging in through
   the gateway (auth, 32 workers, asks member to check the password:
   Argon2id, tens of ms each, the slowest step, so calls queue for member's
   workers): its
   /readyz turns 503 first, then every request gets 200 or a 503 with the
   JSON error body; no 499, no 500, nothing cut off; member exits 0.
Each is started again afterwards and serves.

Prints the counts the processes log for their drain (requests in flight at
SIGTERM and what became of them). Real processes, see sbplatform.py; about
20 s."""
import json
import os
import re
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from sbplatform import GATEWAY_PORT, Platform  # noqa: E402
from sbload import Load  # noqa: E402

P = None
DELAY_MS = 1000  # /readyz 503 while requests are still taken
# member with fewer workers than auth has calls for it, so they queue at member
MEMBER_ENV = {"GRPC_WORKERS": "2"}


def setUpModule():
    global P
    # RPC_CACHE_MAX_ENTRIES=0: the profile reads are calls in flight to member
    # (not the gateway's cached copy) when the gateway is told to stop
    P = Platform(["member", "auth"], env={
        "GRPC_WORKERS": "32", "SHUTDOWN_DELAY_MS": str(DELAY_MS), "SHUTDOWN_GRACE_MS": "5000",
        "LOGIN_RATE_LIMIT": "1000000", "RPC_CACHE_MAX_ENTRIES": "0"}).__enter__()
    try:
        P.restart("member", MEMBER_ENV)
    except BaseException:
        P.__exit__(None, None, None)  # tearDownModule does not run: stop them here
        raise


def tearDownModule():
    P.__exit__(None, None, None)


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def drain_lines(name):
    lines = []
    for line in P.log_text(name).splitlines():
        try:
            msg = json.loads(line).get("msg", "")
        except ValueError:
            continue
        if re.search(r"drain|stopped after|grace of", msg):
            lines.append(msg)
    return lines


class Shutdown(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.member, cls.password = P.signup()
        tokens = P.login(cls.member["loginId"], cls.password)
        cls.path = f"/members/{cls.member['userId']}"
        cls.headers = {"Authorization": f"Bearer {tokens['accessToken']}"}

    def load(self, login=False):
        """32 clients doing authenticated GETs of the profile, or 16 logging in."""
        if login:
            # this run's own client address: the login rate limit's counters
            # (Redis, a minute) must not reach other tests' 127.0.0.1
            load = Load(GATEWAY_PORT, "POST", "/login", {"X-Forwarded-For": P.client_ip}, threads=16,
                        body={"loginId": self.member["loginId"], "password": self.password})
        else:
            load = Load(GATEWAY_PORT, "GET", self.path, self.headers, threads=32)
        load.start()
        deadline = time.monotonic() + 30
        while len(load.answered()) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertGreaterEqual(len(load.answered()), 50, "the load did not get going")
        return load

    def wait_readyz_503(self, url):
        """/readyz answers 503 within the delay, while requests are still taken."""
        deadline = time.monotonic() + DELAY_MS / 1000 * 0.8
        st = None
        while time.monotonic() < deadline:
            st = http_status(url)
            if st == 503:
                return
            time.sleep(0.02)
        self.fail(f"{url} answered {st}, not 503, during the shutdown delay")

    def serves_again(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st, _, _ = P.call("GET", self.path, token=self.headers["Authorization"][7:])
            if st == 200:
                return
            time.sleep(0.1)
        self.fail("not serving after the restart")

    def test_1_gateway(self):
        load = self.load()
        t_term = time.monotonic()
        gw = P.proc("gateway")
        gw.send_signal(15)
        self.wait_readyz_503(f"{P.base}/readyz")
        rc = gw.wait(timeout=30)
        t_exit = time.monotonic()
        time.sleep(0.3)  # the threads find the listener gone
        load.stop()
        out = load.outcomes
        answered = [o for o in out if o.kind == "answered"]
        cut = [o for o in out if o.kind == "cut"]
        in_flight = [o for o in answered if o.sent < t_term < o.done]
        after = [o for o in answered if o.sent >= t_term]
        print(f"gateway SIGTERM under 32 keep-alive clients: {len(answered)} answered "
              f"({len(in_flight)} sent before SIGTERM and answered after it, {len(after)} sent after it, "
              f"{sum(o.close for o in answered)} with Connection: close), "
              f"{sum(o.kind == 'refused' for o in out)} connects refused, "
              f"{sum(o.kind == 'unsent' for o in out)} unsent, {len(cut)} cut off; exit {rc} "
              f"{t_exit - t_term:.2f}s after SIGTERM")
        for line in drain_lines("gateway"):
            print("  gateway:", line)
        self.assertEqual(rc, 0)
        self.assertEqual(cut, [], "requests cut off mid-flight")
        self.assertEqual([o for o in answered if o.status != 200], [], "answers other than 200")
        self.assertGreater(sum(o.close for o in answered), 0, "no answer said Connection: close")
        self.assertGreater(sum(o.kind == "refused" for o in out), 0, "the listener was not closed")
        P.restart("gateway")
        self.serves_again()

    def test_2_backend(self):
        load = self.load(login=True)
        t_term = time.monotonic()
        member = P.proc("member")
        member.send_signal(15)
        self.wait_readyz_503(f"{P.admin_url('member')}/readyz")
        rc = member.wait(timeout=30)
        t_exit = time.monotonic()
        time.sleep(0.5)  # the gateway answers 503 while member is down
        load.stop()
        out = load.outcomes
        answered = [o for o in out if o.kind == "answered"]
        by_status = {}
        for o in answered:
            by_status[o.status] = by_status.get(o.status, 0) + 1
        in_flight = [o for o in answered if o.sent < t_term < o.done]
        print(f"member SIGTERM under 16 clients logging in through the gateway (2 workers): answers {by_status}, "
              f"{len(in_flight)} sent before SIGTERM and answered after it "
              f"({sum(o.status == 200 for o in in_flight)} 200); "
              f"{sum(o.kind != 'answered' for o in out)} not answered; exit {rc} "
              f"{t_exit - t_term:.2f}s after SIGTERM")
        for line in drain_lines("member"):
            print("  member:", line)
        self.assertEqual(rc, 0)
        self.assertEqual([o for o in out if o.kind != "answered"], [], "requests not answered")
        bad = [o for o in answered if o.status not in (200, 503)]
        self.assertEqual(bad, [], "answers other than 200 and 503 (499? 500?)")
        for o in answered:
            if o.status == 503:
                self.assertEqual((o.body or {}).get("error", {}).get("code"), "UNAVAILABLE", o.body)
        self.assertGreater(by_status.get(503, 0), 0, "no 503 while member was down")
        P.restart("member", MEMBER_ENV)
        self.serves_again()


if __name__ == "__main__":
    unittest.main(verbosity=2)
