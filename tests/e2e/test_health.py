#!/usr/bin/env python3
"""A service whose Kafka broker is unreachable (issue 14): it keeps serving,
/readyz stays 200 and names Kafka down, and /metrics shows the outbox
backlog growing with the age of its oldest event and the broker down.

The member service runs with KAFKA_BROKERS at a closed port of this machine
(the shared broker is never touched) behind the real gateway; the calls are
signed with the platform's key (no auth service needed). A withdrawal writes
member.withdrawn to the outbox in its transaction, which the relay cannot
publish."""
import json
import os
import socket
import sys
import time
import unittest
import urllib.error
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from sbplatform import ADMIN_BASE, SERVICES, Platform  # noqa: E402

P = None


def closed_port():
    """A port nothing listens on: bound by the OS, then released."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def setUpModule():
    global P
    P = Platform(["member"], env={"KAFKA_BROKERS": f"127.0.0.1:{closed_port()}",
                                  "HEALTH_REFRESH_MS": "200"}).__enter__()


def tearDownModule():
    P.__exit__(None, None, None)


def get(path):
    url = f"http://127.0.0.1:{ADMIN_BASE + 1 + SERVICES.index('member')}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def gauges():
    _, text = get("/metrics")
    return {k: float(v) for k, v in (line.rsplit(" ", 1) for line in text.splitlines()
                                     if line and not line.startswith("#"))}


def wait_for(pred, timeout=30):
    deadline = time.time() + timeout
    while True:
        g = gauges()
        if pred(g) or time.time() > deadline:
            return g
        time.sleep(0.2)


class Health(unittest.TestCase):
    def withdraw_one(self):
        m, _ = P.signup("USER")
        now = int(time.time())
        tok = P.token({"sub": m["userId"], "role": "USER", "jti": str(uuid.uuid4()), "iat": now,
                       "exp": now + 600, "iss": "showbook-auth", "aud": "showbook"})
        st, body, _ = P.call("DELETE", f"/members/{m['userId']}", token=tok)
        self.assertEqual(st, 200, body)

    def test_kafka_down_the_service_serves_and_says_so(self):
        g = wait_for(lambda g: g.get("sb_kafka_broker_up") == 0)
        self.assertEqual(g.get("sb_kafka_broker_up"), 0, g)
        before = g.get("sb_outbox_unpublished", 0)

        # the RPCs work, their events wait in the outbox
        self.withdraw_one()
        self.withdraw_one()
        g = wait_for(lambda g: g.get("sb_outbox_unpublished", 0) >= before + 2)
        self.assertGreaterEqual(g["sb_outbox_unpublished"], before + 2, g)
        time.sleep(1.5)
        g = wait_for(lambda g: g.get("sb_outbox_oldest_unpublished_age_seconds", 0) >= 1)
        self.assertGreaterEqual(g["sb_outbox_oldest_unpublished_age_seconds"], 1, g)
        self.assertEqual(g["sb_kafka_broker_up"], 0, g)
        self.assertIn("sb_dead_letters", g)

        # ready (Kafka is optional: the outbox absorbs the outage), and Kafka named down
        st, body = get("/readyz")
        self.assertEqual(st, 200, body)

        ready = json.loads(body)
        self.assertEqual(ready["checks"]["postgres"], "ok", ready)
        self.assertEqual(ready["checks"]["redis"], "ok", ready)
        self.assertTrue(ready["checks"]["kafka"].startswith("down"), ready)
        self.assertEqual(ready["optional"], ["kafka"], ready)


if __name__ == "__main__":
    unittest.main(verbosity=2)
