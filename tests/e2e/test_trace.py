#!/usr/bin/env python3
"""One booking followed through the logs by its trace id (issue 11): a
client sends the hold and the payment with one chosen X-Trace-Id; the same
id must be in

  - the gateway's access lines of both requests (and echoed in the answers),
  - the reservation service's lines (the hold, and the confirmation its
    Kafka consumer makes from payment.approved: the consumer adopts the
    event's trace id),
  - the payment service's lines (the charge recorded),
  - sb-paysim's lines (the provider call carries X-Trace-Id),
  - the Kafka headers (x-trace-id) of the booking's events: payment.approved
    on sb.payment.<ns>, reservation.confirmed (emitted by the consumer) on
    sb.reservation.<ns>, read back with kcat -f '%k %h'.

Run by CTest with every real service binary and the real PostgreSQL/Redis/
Kafka; see sbplatform.py."""
import os
import secrets
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from booking import approved_show, mint, wait_for  # noqa: E402
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, Platform  # noqa: E402

P = None
NS = os.environ.get("SB_NAMESPACE", "test")


def setUpModule():
    global P
    P = Platform(env={"GATEWAY_TIMEOUT_MS": "15000"}).__enter__()


def tearDownModule():
    P.__exit__(None, None, None)
    print(f"logs: {P.logdir}", file=sys.stderr)


def kafka_headers(topic):
    """[(key, headers)] of every message on topic (kcat, from the beginning
    to the end)."""
    out = subprocess.run(["kcat", "-b", os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092"), "-C", "-t", topic,
                          "-o", "beginning", "-e", "-q", "-f", "%k\t%h\n"],
                         capture_output=True, text=True, timeout=60)
    return [tuple(line.split("\t", 1)) for line in out.stdout.splitlines() if "\t" in line]


class Trace(unittest.TestCase):
    def test_one_booking_followed_by_its_trace_id(self):
        _, pt = P.user("PLANNER")
        admin = P.login(ADMIN_LOGIN, ADMIN_PASSWORD)["accessToken"]
        _, (sid,) = approved_show(P, pt["accessToken"], admin,
                                  grades=[{"grade": "R", "price": 55000, "seatCount": 20}])
        trace = f"booking-{secrets.token_hex(8)}"
        h = {"X-Trace-Id": trace}
        _, tok = mint(P)
        st, r, hdrs = P.call("POST", "/reservations", {"scheduleId": sid, "seatIds": ["R-A-1"]}, token=tok,
                             headers=h)
        self.assertEqual(st, 201, r)
        self.assertEqual(hdrs.get("X-Trace-Id"), trace)
        rid = r["reservationId"]
        st, p, hdrs = P.call("POST", "/payments", {"reservationId": rid, "amount": int(r["amount"]),
                                                   "method": "CARD", "cardNumber": "4242424242424242"},
                             token=tok, headers=dict(h, **{"Idempotency-Key": f"k-{trace}"}))
        self.assertEqual((st, p.get("status")), (201, "APPROVED"), p)
        self.assertEqual(hdrs.get("X-Trace-Id"), trace)
        wait_for(lambda: P.call("GET", f"/reservations/{rid}", token=tok)[1]["status"] == "CONFIRMED", 30,
                 "CONFIRMED")
        time.sleep(0.5)  # the consumer's last lines

        tagged = f'"trace":"{trace}"'
        for svc in ("gateway", "reservation", "payment", "paysim"):
            lines = [ln for ln in P.log_text(svc).splitlines() if tagged in ln]
            self.assertTrue(lines, f"no {svc} log line with trace {trace}")
            print(f"\n{svc}: {len(lines)} line(s), e.g. {lines[-1][:240]}", file=sys.stderr)
        # the confirmation was logged by the consumer under the booking's trace
        resv = [ln for ln in P.log_text("reservation").splitlines() if tagged in ln]
        self.assertTrue(any(rid in ln for ln in resv), resv)
        # the events' Kafka headers
        pay = [k for k, hd in kafka_headers(f"sb.payment.{NS}") if f"x-trace-id={trace}" in hd]
        self.assertTrue(pay, "payment.approved with the trace id")
        res = [k for k, hd in kafka_headers(f"sb.reservation.{NS}") if f"x-trace-id={trace}" in hd]
        self.assertTrue(res and set(res) == {rid}, res)
        print(f"kafka: sb.payment.{NS} {len(pay)}, sb.reservation.{NS} {len(res)} message(s) with"
              f" x-trace-id={trace}", file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
