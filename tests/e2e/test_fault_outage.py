#!/usr/bin/env python3
"""Fault test (issue 14): a backend down for a long while, then back.

member is stopped for SB_FAULT_OUTAGE_S seconds (default 60, the outage the
issue names; gRPC's default reconnect backoff had grown to tens of seconds
by then) while clients keep calling GET /members/{id} through the gateway:
every answer during the outage is a quick 503 with the JSON error body
(UNAVAILABLE). member is started again: the gateway must answer 200 within
5 s of member's /readyz answering 200 (the reconnect backoff is capped at
RECONNECT_MAX_MS, 2 s). Prints the measured time to serve.

Real processes, see sbplatform.py; takes the outage plus about 15 s (so
about 75 s by default: the issue asks for 60 s)."""
import os
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from sbplatform import GATEWAY_PORT, Platform  # noqa: E402
from sbload import Load  # noqa: E402

P = None
OUTAGE_S = float(os.environ.get("SB_FAULT_OUTAGE_S", "60"))
SERVE_WITHIN_S = 5.0


def setUpModule():
    global P
    # RPC_CACHE_MAX_ENTRIES=0: GET /members/{id} is a cached read (1 s, per
    # caller); here every read must reach member, so that the outage shows
    P = Platform(["member", "auth"], env={"RPC_CACHE_MAX_ENTRIES": "0"}).__enter__()


def tearDownModule():
    P.__exit__(None, None, None)


def ready(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


class Outage(unittest.TestCase):
    def test_backend_outage(self):
        member, tokens = P.user()
        path = f"/members/{member['userId']}"
        load = Load(GATEWAY_PORT, "GET", path, {"Authorization": f"Bearer {tokens['accessToken']}"},
                    threads=2, pause=0.02).start()
        try:
            time.sleep(1)
            self.assertTrue(any(o.status == 200 for o in load.answered()), "no 200 before the outage")

            self.assertEqual(P.stop("member"), 0)
            t_down = time.monotonic()
            time.sleep(OUTAGE_S)
            t_launch = time.monotonic()
            P.launch("member")
            readyz = f"{P.admin_url('member')}/readyz"
            deadline = t_launch + 180
            while not ready(readyz):
                self.assertLess(time.monotonic(), deadline, "member did not become ready")
                self.assertIsNone(P.proc("member").poll(), "member exited during start-up")
                time.sleep(0.01)
            t_ready = time.monotonic()
            t_serve = None
            while t_serve is None and time.monotonic() < t_ready + 30:
                ok = [o for o in load.answered(since=t_down) if o.status == 200]
                t_serve = min(o.done for o in ok) if ok else None
                time.sleep(0.01)
        finally:
            load.stop()

        during = [o for o in load.outcomes if t_down + 0.5 <= o.sent and o.done <= t_launch]
        latency = sorted(o.done - o.sent for o in during)
        print(f"outage of {OUTAGE_S:.0f} s: {len(during)} requests during it, answered "
              f"{sorted({o.status for o in during})}, median {latency[len(latency) // 2] * 1000:.1f} ms, "
              f"max {latency[-1] * 1000:.1f} ms" if latency else "no requests during the outage")
        self.assertGreater(len(during), 0)
        for o in during:
            self.assertEqual(o.kind, "answered", o)
            self.assertEqual(o.status, 503, o)
            self.assertEqual((o.body or {}).get("error", {}).get("code"), "UNAVAILABLE", o.body)
        self.assertEqual([o for o in load.outcomes if o.kind != "answered"], [])
        self.assertIsNotNone(t_serve, "the gateway did not serve member again within 30 s of /readyz")
        took = max(0.0, t_serve - t_ready)
        print(f"member started {t_ready - t_launch:.2f} s after launch; the gateway served 200 "
              f"{took:.2f} s after member's /readyz was 200 (bound {SERVE_WITHIN_S:.0f} s)")
        self.assertLessEqual(took, SERVE_WITHIN_S)


if __name__ == "__main__":
    unittest.main(verbosity=2)
