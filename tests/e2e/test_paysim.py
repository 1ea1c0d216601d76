#!/usr/bin/env python3
"""The payment-provider simulator sb-paysim against its contract
(docs/payments.md section 1): the test cards, idempotency (the same body,
another body, concurrent requests with one key), refunds, the lookup by
idempotency key, the modes (delay, timeout, duplicate webhooks, fail_next),
signed webhooks with retries, the dispute of card 0259, the totals, trace
ids on every log line and webhook, and no card number in the log.

The real binary on a free port; webhooks go to a small HTTP server in this
process that verifies every signature with the shared secret and can answer
500 to a first delivery."""
import hashlib
import hmac
import json
import os
import socket
import sys
import threading
import time
import unittest
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(__file__))
from sbplatform import Paysim  # noqa: E402

SECRET = "test-paysim-secret"
CARDS = {  # card -> (status, charge status, failure_code)
    "4242424242424242": (201, "succeeded", None),
    "4000000000000002": (402, "failed", "card_declined"),
    "4000000000009995": (402, "failed", "insufficient_funds"),
    "4000000000000259": (201, "succeeded", None),
    "5555555555554444": (201, "succeeded", None),  # any other 16 digits passing Luhn
}
P = None
HOOKS = None


class Receiver:
    """The webhook endpoint: records every delivery (with its signature
    checked), answers 500 to the first delivery of an event whose charge
    reference starts with "fail-first"."""

    def __init__(self):
        self.lock = threading.Lock()
        self.deliveries = []  # dicts: event, trace, signature_ok, status
        self.failed_once = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                event = json.loads(body)
                status = 200
                with receiver.lock:
                    ref = event["data"]["object"].get("reference", "")
                    if ref.startswith("fail-first") and event["id"] not in receiver.failed_once:
                        receiver.failed_once.add(event["id"])
                        status = 500
                    receiver.deliveries.append({
                        "event": event, "status": status, "at": time.monotonic(),
                        "trace": self.headers.get("X-Trace-Id"),
                        "signature_ok": verify(self.headers.get("Provider-Signature", ""), body)})
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/payments/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_charge(self, charge_id):
        with self.lock:
            return [d for d in self.deliveries if d["event"]["data"]["object"]["id"] == charge_id]

    def wait(self, pred, charge_id, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.of_charge(charge_id)
            if pred(got):
                return got
            time.sleep(0.02)
        return self.of_charge(charge_id)


def verify(header, body):
    """Provider-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>, t recent."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    if "t" not in parts or "v1" not in parts or abs(time.time() - int(parts["t"])) > 300:
        return False
    want = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, parts["v1"])


def setUpModule():
    global P, HOOKS
    HOOKS = Receiver()
    P = Paysim(webhook_url=HOOKS.url, secret=SECRET,
               env={"PAYSIM_DISPUTE_DELAY_MS": "300", "PAYSIM_WEBHOOK_RETRY_MS": "100",
                    "PAYSIM_DUPLICATE_LAG_MS": "300"}).__enter__()


def tearDownModule():
    P.__exit__(None, None, None)
    log = P.log_text()
    for card in list(CARDS) + ["4000000000000119", "4111111111111111"]:
        assert card not in log, f"card number {card} in the log"
    HOOKS.server.shutdown()


def charge(card="4242424242424242", amount=55000, key=None, trace=None, reference="pay-1", timeout=30):
    body = {"amount": amount, "currency": "KRW", "card_number": card, "reference": reference}
    headers = {"X-Trace-Id": trace} if trace else {}
    return P.call("POST", "/v1/charges", body, key=key or f"k-{uuid.uuid4().hex}", headers=headers,
                  timeout=timeout)


class Charges(unittest.TestCase):
    def tearDown(self):
        P.call("DELETE", "/v1/admin/modes")

    def test_proto3_json_amount_as_string(self):
        # what sb_http_send sends for an int64 field (sb/json.h): a string of digits
        st, c, _ = P.call("POST", "/v1/charges", {"amount": "55000", "currency": "KRW",
                                                  "card_number": "4242424242424242", "reference": ""},
                          key=f"k-{uuid.uuid4().hex}")
        self.assertEqual((st, c["amount"]), (201, 55000), c)

    def test_every_test_card(self):
        for card, (status, state, code) in CARDS.items():
            st, c, _ = charge(card, 12345)
            self.assertEqual(st, status, (card, c))
            self.assertEqual((c["status"], c["failure_code"], c["card_last4"], c["amount"]),
                             (state, code, card[-4:], 12345), c)
            self.assertTrue(c["id"].startswith("ch_"), c)
            self.assertEqual((c["object"], c["currency"], c["amount_refunded"], c["disputed"]),
                             ("charge", "KRW", 0, False), c)
            self.assertNotIn("card_number", c)
            st, got, _ = P.call("GET", f"/v1/charges/{c['id']}")
            self.assertEqual((st, got), (200, c))
        # 0119: 500 api_error, nothing recorded, the key released
        key = f"k-{uuid.uuid4().hex}"
        st, body, _ = charge("4000000000000119", key=key)
        self.assertEqual((st, body["error"]["type"]), (500, "api_error"), body)
        self.assertEqual(P.call("GET", f"/v1/charges?idempotency_key={key}")[1], {"data": []})
        st, body, _ = charge("4000000000000119", key=key)
        self.assertEqual(st, 500, body)  # ran again, not replayed from a record

    def test_bad_requests(self):
        for card in ["4242424242424241", "424242424242424", "42424242424242424", "4242-4242-4242-42", "", 42]:
            st, body, _ = charge(card)
            self.assertEqual((st, body["error"]["type"]), (400, "invalid_request_error"), (card, body))
        for bad in [{"amount": 0}, {"amount": -5}, {"amount": "5x"}, {"amount": "-5"}, {"amount": 1.5},
                    {"currency": "krw"},
                    {"currency": None}, {"reference": 7}]:
            body = dict({"amount": 100, "currency": "KRW", "card_number": "4242424242424242"}, **bad)
            st, resp, _ = P.call("POST", "/v1/charges", body, key=f"k-{uuid.uuid4().hex}")
            self.assertEqual(st, 400, (bad, resp))
        st, resp, _ = P.call("POST", "/v1/charges", raw=b"{not json", key="k-bad-json")
        self.assertEqual(st, 400, resp)
        st, resp, _ = P.call("POST", "/v1/charges", {"amount": 100, "currency": "KRW",
                                                     "card_number": "4242424242424242"})
        self.assertEqual(st, 400, resp)
        self.assertIn("Idempotency-Key", resp["error"]["message"])
        self.assertEqual(P.call("GET", "/v1/charges/ch_nope")[0], 404)
        self.assertEqual(P.call("GET", "/nope")[0], 404)
        self.assertEqual(P.call("PUT", "/v1/charges")[0], 405)
        self.assertEqual(P.call("GET", "/healthz")[:2], (200, {"status": "ok"}))
        # a failed request is not a record: the same key works afterwards
        key = f"k-{uuid.uuid4().hex}"
        self.assertEqual(charge("4242424242424241", key=key)[0], 400)
        self.assertEqual(charge("4242424242424242", key=key)[0], 201)

    def test_idempotency_same_and_other_body(self):
        key = f"k-{uuid.uuid4().hex}"
        before = P.call("GET", "/v1/admin/totals")[1]
        first = charge(key=key, amount=30000)
        again = charge(key=key, amount=30000)
        self.assertEqual(first[:2], again[:2])
        self.assertEqual(first[0], 201)
        # the same object laid out otherwise is the same body
        st, body, _ = P.call("POST", "/v1/charges", raw=json.dumps(
            {"reference": "pay-1", "card_number": "4242424242424242", "currency": "KRW", "amount": 30000},
            indent=2).encode(), key=key)
        self.assertEqual((st, body), first[:2])
        st, body, _ = charge(key=key, amount=30001)
        self.assertEqual((st, body["error"]["type"]), (422, "idempotency_error"), body)
        after = P.call("GET", "/v1/admin/totals")[1]
        self.assertEqual(after["charges"] - before["charges"], 1)
        self.assertEqual(after["charged"] - before["charged"], 30000)
        # keys are per endpoint: a refund may use the charge's key
        st, r, _ = P.call("POST", "/v1/refunds", {"charge": first[1]["id"], "amount": 1}, key=key)
        self.assertEqual(st, 201, r)
        # a declined charge is a record too: replayed
        dkey = f"k-{uuid.uuid4().hex}"
        self.assertEqual(charge("4000000000000002", key=dkey)[:2], charge("4000000000000002", key=dkey)[:2])

    def test_concurrent_same_key_one_charge_409_in_flight(self):
        card = "4012888888881881"
        st, mode, _ = P.call("POST", "/v1/admin/modes", {"card_number": card, "delay_ms": 800})
        self.assertEqual((st, mode["delay_ms"], mode["card_last4"]), (200, 800, "1881"), mode)
        key = f"k-{uuid.uuid4().hex}"
        results = []

        def one(i):
            time.sleep(0.2 * (i > 0))  # the first is in flight when the others come
            results.append(charge(card, 7000, key=key))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r[0] for r in results)
        self.assertEqual(statuses, [201, 409, 409, 409, 409], [r[:2] for r in results])
        self.assertGreaterEqual(time.monotonic() - t0, 0.8)
        for r in results:
            if r[0] == 409:
                self.assertEqual(r[1]["error"]["type"], "idempotency_error")
        won = next(r[1] for r in results if r[0] == 201)
        st, found, _ = P.call("GET", f"/v1/charges?idempotency_key={key}")
        self.assertEqual((st, found), (200, {"data": [won]}))
        every = P.call("GET", "/v1/admin/charges")[1]["data"]
        self.assertEqual([c["id"] for c in every if c["idempotency_key"] == key], [won["id"]])
        # once done, the same request is replayed (without the delay)
        t0 = time.monotonic()
        self.assertEqual(charge(card, 7000, key=key)[:2], (201, won))
        self.assertLess(time.monotonic() - t0, 0.5)

    def test_fail_next(self):
        card = "4000056655665556"
        P.call("POST", "/v1/admin/modes", {"card_number": card, "fail_next": 2})
        key = f"k-{uuid.uuid4().hex}"
        self.assertEqual(charge(card, key=key)[0], 500)
        self.assertEqual(charge(card, key=key)[0], 500)
        self.assertEqual(P.call("GET", f"/v1/charges?idempotency_key={key}")[1], {"data": []})
        st, c, _ = charge(card, key=key)
        self.assertEqual((st, c["status"]), (201, "succeeded"))
        # another card is not affected; an empty card_number means every card
        P.call("POST", "/v1/admin/modes", {"card_number": "", "fail_next": 1})
        self.assertEqual(charge("4242424242424242")[0], 500)
        self.assertEqual(charge("4242424242424242")[0], 201)
        st, body, _ = P.call("POST", "/v1/admin/modes", {"card_number": "4242", "fail_next": 1})
        self.assertEqual(st, 400, body)
        st, body, _ = P.call("POST", "/v1/admin/modes", {"what": 1})
        self.assertEqual(st, 400, body)

    def test_timeout_mode_work_done_answer_withheld(self):
        card = "4000002500003155"
        P.call("POST", "/v1/admin/modes", {"card_number": card, "timeout": True})
        key = f"k-{uuid.uuid4().hex}"
        t0 = time.monotonic()
        with self.assertRaises((socket.timeout, TimeoutError, OSError)):
            charge(card, 9900, key=key, timeout=1)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        st, found, _ = P.call("GET", f"/v1/charges?idempotency_key={key}")
        self.assertEqual(st, 200)
        self.assertEqual([(c["status"], c["amount"]) for c in found["data"]], [("succeeded", 9900)])
        # the client gave up: the held connection is noticed and closed
        deadline = time.time() + 5
        while '"client_gave_up":true' not in P.log_text() and time.time() < deadline:
            time.sleep(0.05)
        self.assertIn('"client_gave_up":true', P.log_text())
        P.call("DELETE", "/v1/admin/modes")
        # a retry with the key gets the answer of the work done
        st, c, _ = charge(card, 9900, key=key)
        self.assertEqual((st, c), (201, found["data"][0]))


class Refunds(unittest.TestCase):
    def test_partial_full_over(self):
        st, c, _ = charge(amount=55000)
        self.assertEqual(st, 201)
        key = f"r-{uuid.uuid4().hex}"
        st, r, _ = P.call("POST", "/v1/refunds", {"charge": c["id"], "amount": 20000, "reason": "partial"},
                          key=key)
        self.assertEqual((st, r["object"], r["amount"], r["charge"], r["status"]),
                         (201, "refund", 20000, c["id"], "succeeded"), r)
        self.assertTrue(r["id"].startswith("re_"))
        self.assertEqual(P.call("POST", "/v1/refunds", {"charge": c["id"], "amount": 20000, "reason": "partial"},
                                key=key)[:2], (st, r))
        self.assertEqual(P.call("GET", f"/v1/charges/{c['id']}")[1]["amount_refunded"], 20000)
        st, body, _ = P.call("POST", "/v1/refunds", {"charge": c["id"], "amount": 35001}, key=f"r-{uuid.uuid4().hex}")
        self.assertEqual((st, body["error"]["type"]), (400, "invalid_request_error"), body)
        st, r2, _ = P.call("POST", "/v1/refunds", {"charge": c["id"], "amount": "0"}, key=f"r-{uuid.uuid4().hex}")
        self.assertEqual((st, r2["amount"]), (201, 35000), r2)  # 0 (proto3's default) = what is left
        self.assertEqual(P.call("GET", f"/v1/charges/{c['id']}")[1]["amount_refunded"], 55000)
        st, body, _ = P.call("POST", "/v1/refunds", {"charge": c["id"], "amount": 1}, key=f"r-{uuid.uuid4().hex}")
        self.assertEqual(st, 400, body)
        st, body, _ = P.call("POST", "/v1/refunds", {"charge": c["id"]}, key=f"r-{uuid.uuid4().hex}")
        self.assertEqual(st, 400, body)

    def test_refused_refunds(self):
        st, failed, _ = charge("4000000000000002")
        self.assertEqual(st, 402)
        st, body, _ = P.call("POST", "/v1/refunds", {"charge": failed["id"]}, key=f"r-{uuid.uuid4().hex}")
        self.assertEqual(st, 400, body)
        st, body, _ = P.call("POST", "/v1/refunds", {"charge": "ch_nope"}, key=f"r-{uuid.uuid4().hex}")
        self.assertEqual(st, 404, body)
        st, body, _ = P.call("POST", "/v1/refunds", {"charge": failed["id"]})
        self.assertEqual(st, 400, body)
        for bad in [{}, {"charge": 5}, {"charge": failed["id"], "amount": -1}, {"charge": failed["id"], "amount": "x"}]:
            st, body, _ = P.call("POST", "/v1/refunds", bad, key=f"r-{uuid.uuid4().hex}")
            self.assertEqual(st, 400, (bad, body))


class Webhooks(unittest.TestCase):
    def tearDown(self):
        P.call("DELETE", "/v1/admin/modes")

    def test_signed_with_the_charge_trace(self):
        trace = f"t-{uuid.uuid4().hex}"
        st, c, hdrs = charge(trace=trace, amount=4400)
        self.assertEqual(st, 201)
        self.assertEqual(hdrs.get("X-Trace-Id"), trace)
        got = HOOKS.wait(lambda d: len(d) >= 1, c["id"])
        self.assertEqual(len(got), 1, got)
        d = got[0]
        self.assertTrue(d["signature_ok"], d)
        self.assertEqual(d["trace"], trace)
        e = d["event"]
        self.assertEqual((e["type"], e["data"]["object"]), ("payment.succeeded", c))
        self.assertTrue(e["id"].startswith("evt_"))
        self.assertIsInstance(e["created"], int)
        # every log line of that request carries its trace (info lines are
        # written by the log's writer thread within LOG_FLUSH_MS: sb/log.h)
        deadline = time.time() + 5
        while True:
            lines = [json.loads(x) for x in P.log_text().splitlines() if c["id"] in x or trace in x]
            if any(x.get("msg") == "access" for x in lines) or time.time() > deadline:
                break
            time.sleep(0.05)
        self.assertTrue(any(x.get("msg") == "access" for x in lines), lines)
        self.assertTrue(all(x.get("trace") == trace for x in lines), lines)
        # a declined charge: payment.failed; a refund: charge.refunded with the refund
        st, f, _ = charge("4000000000009995")
        got = HOOKS.wait(lambda d: len(d) >= 1, f["id"])
        self.assertEqual([(x["event"]["type"], x["signature_ok"]) for x in got], [("payment.failed", True)])
        P.call("POST", "/v1/refunds", {"charge": c["id"], "amount": 400}, key=f"r-{uuid.uuid4().hex}")
        got = HOOKS.wait(lambda d: len(d) >= 2, c["id"])
        self.assertEqual([x["event"]["type"] for x in got], ["payment.succeeded", "charge.refunded"])
        self.assertEqual(got[1]["event"]["data"]["object"]["amount_refunded"], 400)
        self.assertEqual(got[1]["event"]["data"]["refund"]["amount"], 400)

    def test_retried_after_500(self):
        st, c, _ = charge(reference="fail-first-1")
        got = HOOKS.wait(lambda d: len(d) >= 2, c["id"])
        self.assertEqual([x["status"] for x in got], [500, 200], got)
        self.assertEqual(got[0]["event"], got[1]["event"])  # the same event again
        self.assertTrue(all(x["signature_ok"] for x in got))
        self.assertGreaterEqual(got[1]["at"] - got[0]["at"], 0.09)  # PAYSIM_WEBHOOK_RETRY_MS=100
        time.sleep(0.3)
        self.assertEqual(len(HOOKS.of_charge(c["id"])), 2)  # delivered: no more

    def test_duplicate_out_of_order(self):
        card = "4000000000003220"
        P.call("POST", "/v1/admin/modes", {"card_number": card, "duplicate_webhooks": True})
        st, c, _ = charge(card, 8000)
        self.assertEqual(st, 201, c)
        P.call("POST", "/v1/refunds", {"charge": c["id"]}, key=f"r-{uuid.uuid4().hex}")
        got = HOOKS.wait(lambda d: len(d) >= 4, c["id"])
        types = [x["event"]["type"] for x in got]
        self.assertEqual(sorted(types), ["charge.refunded"] * 2 + ["payment.succeeded"] * 2, types)
        ids = [x["event"]["id"] for x in got]
        self.assertEqual(len(set(ids)), 2, ids)  # twice each, one id per event
        # out of order: the refund's copy came before the charge's original
        self.assertLess(types.index("charge.refunded"), len(types) - 1 - types[::-1].index("payment.succeeded"))
        self.assertTrue(all(x["signature_ok"] for x in got))

    def test_dispute(self):
        before = P.call("GET", "/v1/admin/totals")[1]
        st, c, _ = charge("4000000000000259", 66000, trace="t-dispute")
        self.assertEqual((st, c["disputed"]), (201, False))
        got = HOOKS.wait(lambda d: len(d) >= 2, c["id"])
        self.assertEqual([x["event"]["type"] for x in got], ["payment.succeeded", "charge.disputed"])
        self.assertTrue(got[1]["event"]["data"]["object"]["disputed"])
        self.assertEqual(got[1]["trace"], "t-dispute")
        self.assertTrue(got[1]["signature_ok"])
        self.assertGreaterEqual(got[1]["at"] - got[0]["at"], 0.2)  # PAYSIM_DISPUTE_DELAY_MS=300
        self.assertTrue(P.call("GET", f"/v1/charges/{c['id']}")[1]["disputed"])
        self.assertEqual(P.call("GET", "/v1/admin/totals")[1]["disputed"] - before["disputed"], 1)


class Totals(unittest.TestCase):
    def test_totals_of_a_fresh_provider(self):
        with Paysim(env={"PAYSIM_DISPUTE_DELAY_MS": "100"}) as p:  # no webhooks
            self.assertEqual(p.call("GET", "/v1/admin/totals")[1],
                             {"charged": 0, "refunded": 0, "charges": 0, "failed": 0, "refunds": 0,
                              "disputed": 0})
            ids = []
            for card, amount in [("4242424242424242", 1000), ("4242424242424242", 2000),
                                 ("4000000000000002", 500), ("4000000000000259", 3000),
                                 ("4000000000000119", 700)]:
                st, c, _ = p.call("POST", "/v1/charges", {"amount": amount, "currency": "KRW",
                                                          "card_number": card}, key=uuid.uuid4().hex)
                ids.append(c.get("id"))
            p.call("POST", "/v1/refunds", {"charge": ids[0], "amount": 300}, key="a")
            p.call("POST", "/v1/refunds", {"charge": ids[1]}, key="b")
            time.sleep(0.4)
            self.assertEqual(p.call("GET", "/v1/admin/totals")[1],
                             {"charged": 6000, "refunded": 2300, "charges": 3, "failed": 1, "refunds": 2,
                              "disputed": 1})
            listed = p.call("GET", "/v1/admin/charges")[1]["data"]
            self.assertEqual([c["id"] for c in listed], ids[:4])
            self.assertEqual([c["amount_refunded"] for c in listed], [300, 2000, 0, 0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
