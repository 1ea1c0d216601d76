#!/usr/bin/env python3
"""Payments through the gateway against the provider simulator sb-paysim
(docs/payments.md section 2): the checks of POST /payments, declined cards,
provider errors and time-outs (the reconciler), Idempotency-Key (replay,
another body, 8 concurrent requests with one key), refunds, who sees what,
signed webhooks (bad signature, old timestamp, duplicates) and the ledger
check (provider against payments, payments against CONFIRMED
reservations), which must be clean at the end.

The real binaries with the real PostgreSQL/Redis/Kafka (sbplatform.py),
sb-paysim beside them. The simulator's webhooks reach the gateway through a
small relay in this process, which can hold back the provider's own
payment.* webhooks, so the reconciler, not a webhook, settles the time-out
case. The payment and reservation services' databases are dropped first:
the ledger check compares them with this run's simulator, which starts
empty."""
import concurrent.futures as cf
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(__file__))
from booking import approved_show, mint, psql, wait_for  # noqa: E402
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, WEBHOOK_SECRET, Platform  # noqa: E402

OK_CARD = "4242424242424242"
OTHER_CARD = "5555555555554444"
DECLINED_CARD = "4000000000000002"
ERROR_CARD = "4000000000000119"
TIMEOUT_CARD = "4111111111111111"
PROVIDER_TIMEOUT_MS = 1500
GRACE_MS = 2500
RECONCILE_MS = 200

P = None
ADMIN = None
RELAY = None


class Relay:
    """The simulator's webhook URL: forwards each delivery to the gateway's
    /payments/webhook as it came (bytes and signature), or, while `hold`
    returns true for the event, answers 400 (the simulator drops it)."""

    def __init__(self):
        self.hold = lambda event: False
        self.lock = threading.Lock()
        self.seen = []  # (event type, status answered)
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                event = json.loads(body)
                if relay.hold(event):
                    status = 400
                else:
                    req = urllib.request.Request(P.base + "/payments/webhook", data=body, method="POST")
                    for h in ("Content-Type", "Provider-Signature", "X-Trace-Id"):
                        if self.headers.get(h):
                            req.add_header(h, self.headers[h])
                    try:
                        with urllib.request.urlopen(req, timeout=10) as r:
                            status = r.status
                    except urllib.error.HTTPError as e:
                        status = e.code
                    except OSError:
                        status = 502
                with relay.lock:
                    relay.seen.append((event.get("type"), status))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def drop_databases():
    """The payment and reservation services' test databases, which the
    ledger check compares with this run's (empty) simulator."""
    url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    for svc in ("payment", "reservation"):
        db = f"sb_{svc}_{os.environ.get('SB_NAMESPACE', 'test')}"
        subprocess.run(["psql", f"{url.rsplit('/', 1)[0]}/postgres", "-v", "ON_ERROR_STOP=1", "-qc",
                        f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"], check=True, capture_output=True)


def setUpModule():
    global P, ADMIN, RELAY
    drop_databases()
    RELAY = Relay()
    P = Platform(env={"PROVIDER_TIMEOUT_MS": str(PROVIDER_TIMEOUT_MS),
                      "PAYMENT_PENDING_GRACE_MS": str(GRACE_MS),
                      "PAYMENT_RECONCILE_MS": str(RECONCILE_MS),
                      "IDEMPOTENCY_STALE_S": "3",
                      "GATEWAY_TIMEOUT_MS": "15000", "REDIS_TIMEOUT_MS": "10000"}).__enter__()
    try:
        # the simulator again, empty, with its webhooks through the relay
        P.kill("paysim")
        P.launch("paysim", {"PAYSIM_WEBHOOK_URL": RELAY.url})
        P.wait_ready()
        ADMIN = P.login(ADMIN_LOGIN, ADMIN_PASSWORD)
    except BaseException:
        P.__exit__(None, None, None)
        raise


def tearDownModule():
    P.__exit__(None, None, None)
    RELAY.server.shutdown()


def sign(body: bytes, t=None, secret=WEBHOOK_SECRET):
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def totals():
    st, t, _ = P.provider("GET", "/v1/admin/totals")
    assert st == 200, (st, t)
    return t


class Payments(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.planner, cls.pt = P.user("PLANNER")
        cls.at = ADMIN["accessToken"]
        # 55,000 a seat; every test takes seats of its own
        cls.perf, (cls.sid,) = approved_show(P, cls.pt["accessToken"], cls.at,
                                             grades=[{"grade": "R", "price": 55000, "seatCount": 100}])
        cls.next_seat = 0
        cls.seat_lock = threading.Lock()

    def setUp(self):
        P.provider("DELETE", "/v1/admin/modes")
        RELAY.hold = lambda event: False

    def reservation(self, seats=1):
        """A fresh member's PENDING_PAYMENT reservation: (token, uid, reservation)."""
        with self.seat_lock:
            ids = [f"R-{chr(ord('A') + (Payments.next_seat + i) // 20)}-{(Payments.next_seat + i) % 20 + 1}"
                   for i in range(seats)]
            Payments.next_seat += seats
        uid, tok = mint(P)
        st, r, _ = P.call("POST", "/reservations", {"scheduleId": self.sid, "seatIds": ids}, token=tok)
        self.assertEqual(st, 201, r)
        self.assertEqual(int(r["amount"]), 55000 * seats)
        return tok, uid, r

    def pay(self, tok, r, card=OK_CARD, key=None, amount=None, headers=None):
        h = dict(headers or {})
        if key is not False:
            h["Idempotency-Key"] = key or f"k-{uuid.uuid4()}"
        body = {"reservationId": r["reservationId"], "amount": amount or int(r["amount"]),
                "method": "CARD", "cardNumber": card}
        return P.call("POST", "/payments", body, token=tok, headers=h)

    def payment(self, pid, tok=None):
        st, p, _ = P.call("GET", f"/payments/{pid}", token=tok or self.at)
        self.assertEqual(st, 200, p)
        return p

    def assertError(self, resp, status, code, *words):
        st, body, _ = resp
        self.assertEqual(st, status, body)
        self.assertEqual(body["error"]["code"], code, body)
        for w in words:
            self.assertIn(w, body["error"]["message"])

    def log_of(self, pid):
        return psql(f"SELECT from_status, to_status, actor, reason FROM payment_log"
                    f" WHERE payment_id = '{pid}' ORDER BY id", service="payment")

    def events_of(self, pid, type_):
        """Events of type_ in the payment service's outbox that carry payment pid."""
        return int(psql(f"SELECT count(*) FROM sb_outbox WHERE type = '{type_}'"
                        f" AND position(convert_to('{pid}', 'UTF8') IN envelope) > 0",
                        service="payment")[0][0])

    # ---- CreatePayment: checks ----
    def test_wrong_amount_is_400_and_nothing_charged(self):
        tok, _, r = self.reservation()
        before = totals()
        self.assertError(self.pay(tok, r, amount=int(r["amount"]) + 1), 400, "INVALID_ARGUMENT",
                         "does not match", r["amount"])
        self.assertEqual(totals(), before)
        st, lst, _ = P.call("GET", "/payments", token=tok)
        self.assertEqual((st, lst.get("payments", [])), (200, []))

    def test_missing_key_is_400(self):
        tok, _, r = self.reservation()
        self.assertError(self.pay(tok, r, key=False), 400, "INVALID_ARGUMENT", "Idempotency-Key")
        self.assertError(self.pay(tok, r, card="4242424242424241"), 400, "INVALID_ARGUMENT", "Luhn")

    def test_unknown_or_foreign_reservation_is_404(self):
        tok, _, r = self.reservation()
        _, other = mint(P)
        self.assertError(self.pay(other, r), 404, "NOT_FOUND")
        self.assertError(self.pay(tok, dict(r, reservationId=str(uuid.uuid4()))), 404, "NOT_FOUND")

    # ---- outcomes ----
    def test_declined_card_then_paid_with_another_card(self):
        tok, uid, r = self.reservation()
        st, p, _ = self.pay(tok, r, card=DECLINED_CARD)
        self.assertEqual(st, 201, p)
        self.assertEqual((p["status"], p["reason"], p["cardLast4"], p["userId"]),
                         ("DECLINED", "card_declined", "0002", uid))
        self.assertTrue(p["providerRef"].startswith("ch_"), p)
        st, res, _ = P.call("GET", f"/reservations/{r['reservationId']}", token=tok)
        self.assertEqual((st, res["status"]), (200, "PENDING_PAYMENT"))
        st, p2, _ = self.pay(tok, r, card=OK_CARD)
        self.assertEqual(st, 201, p2)
        self.assertEqual((p2["status"], p2["cardLast4"], p2["amount"]), ("APPROVED", "4242", r["amount"]))
        self.assertNotEqual(p2["paymentId"], p["paymentId"])
        st, c, _ = P.provider("GET", f"/v1/charges/{p2['providerRef']}")
        self.assertEqual((st, c["status"], c["amount"], c["idempotency_key"], c["reference"]),
                         (200, "succeeded", 55000, f"pay_{p2['paymentId']}", p2["paymentId"]))
        self.assertEqual([row[:2] for row in self.log_of(p2["paymentId"])],
                         [["", "PENDING"], ["PENDING", "APPROVED"]])
        # payment.approved confirms the reservation (the saga, test_saga.py); a
        # second payment of the paid reservation is refused
        wait_for(lambda: P.call("GET", f"/reservations/{r['reservationId']}", token=tok)[1]["status"]
                 == "CONFIRMED", 30, "the reservation confirmed")
        self.assertError(self.pay(tok, r, card=OTHER_CARD), 400, "FAILED_PRECONDITION", "CONFIRMED")

    def test_provider_error_then_retry(self):
        tok, _, r = self.reservation()
        before = totals()
        # (the gateway words every 503 itself: "... unavailable; try again later")
        self.assertError(self.pay(tok, r, card=ERROR_CARD), 503, "UNAVAILABLE", "try again")
        st, lst, _ = P.call("GET", "/payments", token=tok)
        self.assertEqual([(p["status"], p["reason"]) for p in lst["payments"]], [("DECLINED", "provider error")])
        # the next charge of this card fails too (fail_next); the same key then runs again
        st, m, _ = P.provider("POST", "/v1/admin/modes", {"card_number": OTHER_CARD, "fail_next": 1})
        self.assertEqual(st, 200, m)
        key = f"k-{uuid.uuid4()}"
        self.assertError(self.pay(tok, r, card=OTHER_CARD, key=key), 503, "UNAVAILABLE")
        st, p, _ = self.pay(tok, r, card=OTHER_CARD, key=key)
        self.assertEqual((st, p["status"]), (201, "APPROVED"), p)
        after = totals()
        self.assertEqual((after["charges"] - before["charges"], after["charged"] - before["charged"]),
                         (1, 55000))

    def test_provider_timeout_is_settled_by_the_reconciler(self):
        tok, _, r = self.reservation()
        st, m, _ = P.provider("POST", "/v1/admin/modes", {"card_number": TIMEOUT_CARD, "timeout": True})
        self.assertEqual(st, 200, m)
        RELAY.hold = lambda e: e["type"].startswith("payment.")  # no webhook settles it
        t0 = time.time()
        st, p, _ = self.pay(tok, r, card=TIMEOUT_CARD)
        self.assertEqual((st, p["status"]), (201, "PENDING"), p)
        self.assertGreaterEqual(time.time() - t0, PROVIDER_TIMEOUT_MS / 1000 - 0.2)
        wait_for(lambda: self.payment(p["paymentId"])["status"] != "PENDING",
                 (GRACE_MS + RECONCILE_MS + PROVIDER_TIMEOUT_MS) / 1000 + 5, "reconciled")
        settled = time.time() - t0
        done = self.payment(p["paymentId"])
        self.assertEqual(done["status"], "APPROVED", done)
        self.assertTrue(done["providerRef"].startswith("ch_"))
        self.assertEqual(self.log_of(p["paymentId"])[-1][:3], ["PENDING", "APPROVED", "reconciler"])
        self.assertEqual(self.events_of(p["paymentId"], "payment.approved"), 1)
        print(f"\ntime-out: PENDING settled APPROVED by the reconciler {settled:.2f}s after the request",
              file=sys.stderr)

    def test_kill_during_charge_is_settled_after_restart(self):
        """kill -9 of the payment service while the provider works on a
        charge (PENDING committed, no answer recorded): after the restart
        the reconciler settles it (the provider's own webhooks held back)."""
        tok, _, r = self.reservation()
        st, m, _ = P.provider("POST", "/v1/admin/modes", {"card_number": OTHER_CARD, "delay_ms": 1500})
        self.assertEqual(st, 200, m)
        RELAY.hold = lambda e: e["type"].startswith("payment.")
        before = totals()
        key = f"k-{uuid.uuid4()}"
        claimed = time.time()
        with cf.ThreadPoolExecutor(1) as ex:
            call = ex.submit(self.pay, tok, r, OTHER_CARD, key)
            wait_for(lambda: psql("SELECT 1 FROM payments p WHERE status = 'PENDING' AND reservation_id ="
                                  f" '{r['reservationId']}'", service="payment"), 10, "PENDING committed")
            P.kill("payment")
            st, body, _ = call.result()
        self.assertEqual(st, 503, body)  # the call died with the service
        t0 = time.time()
        P.start_service("payment")
        P.wait_ready()
        (pid,) = psql(f"SELECT payment_id FROM payments WHERE reservation_id = '{r['reservationId']}'",
                      service="payment")[0]
        wait_for(lambda: self.payment(pid)["status"] != "PENDING",
                 (GRACE_MS + RECONCILE_MS + PROVIDER_TIMEOUT_MS) / 1000 + 10, "settled after the restart")
        self.assertEqual(self.payment(pid)["status"], "APPROVED")
        self.assertEqual(self.log_of(pid)[-1][:3], ["PENDING", "APPROVED", "reconciler"])
        # the key's claim was left unanswered: once stale (IDEMPOTENCY_STALE_S), the
        # same request is answered with the payment its first run made
        if time.time() < claimed + 2.5:  # (not stale yet: in progress)
            self.assertError(self.pay(tok, r, OTHER_CARD, key), 409, "ABORTED", "in progress")
        time.sleep(max(0.0, claimed + 3.5 - time.time()))
        st, again, _ = self.pay(tok, r, OTHER_CARD, key)
        self.assertEqual(st, 201, again)
        self.assertEqual((again["paymentId"], again["status"]), (pid, "APPROVED"), again)
        self.assertEqual(self.pay(tok, r, OTHER_CARD, key)[:2], (st, again))
        after = totals()
        self.assertEqual(after["charges"] - before["charges"], 1)
        print(f"\nkill -9 during a charge: settled APPROVED {time.time() - t0:.2f}s after the restart",
              file=sys.stderr)

    def test_latency_of_twenty_payments(self):
        """A figure: POST /payments end to end (the gateway, GetReservation,
        transaction 1, the provider, transaction 2), one after another."""
        holds = [self.reservation() for _ in range(20)]
        times = []
        for tok, _, r in holds:
            t0 = time.perf_counter()
            st, p, _ = self.pay(tok, r)
            times.append((time.perf_counter() - t0) * 1000)
            self.assertEqual((st, p["status"]), (201, "APPROVED"), p)
        times.sort()
        print(f"\nPOST /payments, 20 in a row: median {times[10]:.1f} ms, max {times[-1]:.1f} ms",
              file=sys.stderr)

    # ---- Idempotency-Key ----
    def test_replay_and_other_body(self):
        tok, _, r = self.reservation()
        key = f"k-{uuid.uuid4()}"
        first = self.pay(tok, r, key=key)
        self.assertEqual(first[0], 201, first[1])
        again = self.pay(tok, r, key=key)
        self.assertEqual((again[0], again[1]), (first[0], first[1]))
        self.assertError(self.pay(tok, r, key=key, card=OTHER_CARD), 409, "ALREADY_EXISTS", "different")
        # a declined answer is replayed the same way
        tok2, _, r2 = self.reservation()
        d1 = self.pay(tok2, r2, key=key, card=DECLINED_CARD)  # the key is per member
        d2 = self.pay(tok2, r2, key=key, card=DECLINED_CARD)
        self.assertEqual((d1[0], d1[1]["status"]), (201, "DECLINED"))
        self.assertEqual((d2[0], d2[1]), (d1[0], d1[1]))

    def test_concurrent_same_key_one_charge(self):
        tok, _, r = self.reservation()
        before = totals()
        key = f"k-{uuid.uuid4()}"
        barrier = threading.Barrier(8)

        def one(_):
            barrier.wait()
            return self.pay(tok, r, key=key)

        with cf.ThreadPoolExecutor(8) as ex:
            answers = list(ex.map(one, range(8)))
        ok = [b for st, b, _ in answers if st == 201]
        self.assertGreaterEqual(len(ok), 1, answers)
        for st, b, _ in answers:
            self.assertIn(st, (201, 409), b)
            if st == 409:
                self.assertIn("in progress", b["error"]["message"])
        self.assertTrue(all(b == ok[0] for b in ok), ok)
        after = totals()
        self.assertEqual((after["charges"] - before["charges"], after["charged"] - before["charged"]),
                         (1, 55000))
        st, found, _ = P.provider("GET", f"/v1/charges?idempotency_key=pay_{ok[0]['paymentId']}")
        self.assertEqual(len(found["data"]), 1)
        st, lst, _ = P.call("GET", "/payments", token=tok)
        self.assertEqual(len(lst["payments"]), 1)
        # once done, the key answers as the first time
        again = self.pay(tok, r, key=key)
        self.assertEqual((again[0], again[1]), (201, ok[0]))
        print(f"\n8 concurrent requests, one key: {len(ok)} x 201, {8 - len(ok)} x 409, 1 charge",
              file=sys.stderr)

    # ---- refunds, access ----
    def test_refund_by_delete(self):
        tok, _, r = self.reservation()
        st, p, _ = self.pay(tok, r)
        self.assertEqual((st, p["status"]), (201, "APPROVED"), p)
        before = totals()
        st, ref, _ = P.call("DELETE", f"/payments/{p['paymentId']}", token=tok)
        self.assertEqual((st, ref["status"], ref["reason"]), (200, "REFUNDED", "refunded by the member"), ref)
        st, again, _ = P.call("DELETE", f"/payments/{p['paymentId']}", token=tok)
        self.assertEqual((st, again["status"]), (200, "REFUNDED"))
        after = totals()
        self.assertEqual((after["refunds"] - before["refunds"], after["refunded"] - before["refunded"]),
                         (1, 55000))
        st, c, _ = P.provider("GET", f"/v1/charges/{p['providerRef']}")
        self.assertEqual(c["amount_refunded"], 55000)
        self.assertEqual(self.events_of(p["paymentId"], "payment.refunded"), 1)
        # a declined payment has nothing to refund
        tok2, _, r2 = self.reservation()
        st, d, _ = self.pay(tok2, r2, card=DECLINED_CARD)
        self.assertError(P.call("DELETE", f"/payments/{d['paymentId']}", token=tok2), 400,
                         "FAILED_PRECONDITION", "DECLINED")

    def test_other_members_payment(self):
        tok, uid, r = self.reservation()
        st, p, _ = self.pay(tok, r)
        self.assertEqual(st, 201, p)
        other_uid, other = mint(P)
        self.assertError(P.call("GET", f"/payments/{p['paymentId']}", token=other), 404, "NOT_FOUND")
        self.assertError(P.call("DELETE", f"/payments/{p['paymentId']}", token=other), 404, "NOT_FOUND")
        self.assertError(P.call("GET", f"/payments?userId={uid}", token=other), 403, "PERMISSION_DENIED")
        st, lst, _ = P.call("GET", "/payments", token=other)
        self.assertEqual(lst.get("payments", []), [])
        self.assertError(P.call("GET", f"/payments/{p['paymentId']}"), 401, "UNAUTHENTICATED")
        # the owner and an admin see it; by reservation too
        self.assertEqual(self.payment(p["paymentId"], tok)["paymentId"], p["paymentId"])
        st, byr, _ = P.call("GET", f"/payments/{p['paymentId']}?reservationId=x", token=tok)
        self.assertEqual(st, 400, byr)
        st, lst, _ = P.call("GET", f"/payments?userId={uid}", token=self.at)
        self.assertEqual([x["paymentId"] for x in lst["payments"]], [p["paymentId"]])
        # admin correction needs a reason and is logged
        self.assertError(P.call("PUT", f"/payments/{p['paymentId']}", {"status": "CANCELLED"}, token=self.at),
                         400, "INVALID_ARGUMENT", "reason")
        self.assertError(P.call("PUT", f"/payments/{p['paymentId']}",
                                {"providerRef": "x", "reason": "r"}, token=tok), 403, "PERMISSION_DENIED")

    def test_admin_correction_is_logged(self):
        tok, _, r = self.reservation()
        st, p, _ = self.pay(tok, r, card=DECLINED_CARD)
        self.assertEqual(st, 201, p)
        admin_id = ADMIN["userId"] if "userId" in ADMIN else None
        st, c, _ = P.call("PUT", f"/payments/{p['paymentId']}",
                          {"status": "CANCELLED", "reason": "card holder asked to void it"}, token=self.at)
        self.assertEqual((st, c["status"], c["reason"]), (200, "CANCELLED", "card holder asked to void it"), c)
        st, c2, _ = P.call("PUT", f"/payments/{p['paymentId']}",
                           {"providerRef": p["providerRef"], "reason": "reference checked"}, token=self.at)
        self.assertEqual((st, c2["status"], c2["providerRef"]), (200, "CANCELLED", p["providerRef"]), c2)
        log = self.log_of(p["paymentId"])
        self.assertEqual([row[:2] for row in log[-2:]], [["DECLINED", "CANCELLED"], ["CANCELLED", "CANCELLED"]])
        self.assertEqual([row[3] for row in log[-2:]], ["admin correction: card holder asked to void it",
                                                       "admin correction: reference checked"])
        if admin_id:
            self.assertEqual({row[2] for row in log[-2:]}, {admin_id})
        self.assertError(P.call("PUT", f"/payments/{p['paymentId']}", {"status": "BOGUS", "reason": "x"},
                                token=self.at), 400, "INVALID_ARGUMENT")

    def test_list_pages_newest_first(self):
        tok, uid, r = self.reservation()
        ids = []
        for _ in range(3):
            st, p, _ = self.pay(tok, r, card=DECLINED_CARD)
            self.assertEqual(st, 201, p)
            ids.append(p["paymentId"])
        seen, token = [], ""
        while True:
            st, page, _ = P.call("GET", f"/payments?pageSize=2&pageToken={token}", token=tok)
            self.assertEqual(st, 200, page)
            seen += [x["paymentId"] for x in page["payments"]]
            token = page.get("nextPageToken", "")
            if not token:
                break
        self.assertEqual(seen, ids[::-1])

    # ---- webhooks ----
    def test_webhook_signature_and_age(self):
        body = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "payment.succeeded", "created": 1,
                           "data": {"object": {"id": "ch_x", "status": "succeeded"}}}).encode()
        hook = lambda sig: P.call("POST", "/payments/webhook", raw=body,  # noqa: E731
                                  headers={"Provider-Signature": sig})
        self.assertError(hook(sign(body, secret="wrong-secret")), 401, "UNAUTHENTICATED", "does not match")
        self.assertError(hook(sign(body + b" ")), 401, "UNAUTHENTICATED")  # signed other bytes
        self.assertError(P.call("POST", "/payments/webhook", raw=body), 401, "UNAUTHENTICATED")
        self.assertError(hook(sign(body, t=int(time.time()) - 301)), 401, "UNAUTHENTICATED", "300 s")
        st, ok, _ = hook(sign(body))
        self.assertEqual((st, ok["duplicate"]), (200, False), ok)
        st, ok, _ = hook(sign(body))
        self.assertEqual((st, ok["duplicate"]), (200, True), ok)

    def test_webhook_of_our_refund_before_its_answer(self):
        """The provider's charge.refunded webhook of a refund we asked for
        lands before the provider's answer to our call (the answer delayed):
        one refund, one payment.refunded, and the log still says who asked
        and why, whichever side confirmed it."""
        tok, uid, r = self.reservation()
        st, p, _ = self.pay(tok, r, card=OTHER_CARD)
        self.assertEqual((st, p["status"]), (201, "APPROVED"), p)
        pid = p["paymentId"]
        st, m, _ = P.provider("POST", "/v1/admin/modes", {"card_number": OTHER_CARD, "delay_ms": 700})
        self.assertEqual(st, 200, m)
        with RELAY.lock:
            mark = len(RELAY.seen)
        st, c, _ = P.call("DELETE", f"/payments/{pid}?reason=changed+my+mind", token=tok)
        self.assertEqual((st, c["status"]), (200, "REFUNDED"), c)
        with RELAY.lock:
            hooks = [s for t, s in RELAY.seen[mark:] if t == "charge.refunded"]
        self.assertEqual(hooks, [200])  # relayed and answered while our call waited
        log = self.log_of(pid)
        self.assertEqual(log[-2:], [["APPROVED", "APPROVED", uid, "refund requested: changed my mind"],
                                    ["APPROVED", "REFUNDED", "provider", "charge.refunded"]], log)
        self.assertEqual(self.events_of(pid, "payment.refunded"), 1)
        # asked again: the same answer, nothing new
        st, c, _ = P.call("DELETE", f"/payments/{pid}?reason=again", token=tok)
        self.assertEqual((st, c["status"]), (200, "REFUNDED"), c)
        self.assertEqual(self.log_of(pid), log)

    def test_duplicate_webhook_one_effect(self):
        """A refund made at the provider whose answer we never saw: its
        charge.refunded webhook, delivered three times, refunds once."""
        tok, _, r = self.reservation()
        st, p, _ = self.pay(tok, r)
        self.assertEqual(st, 201, p)
        RELAY.hold = lambda e: e["type"] == "charge.refunded"  # only ours arrive
        st, ref, _ = P.provider("POST", "/v1/refunds", {"charge": p["providerRef"], "amount": 55000,
                                                        "reason": "refunded at the provider"},
                                key=f"ref_{p['paymentId']}")
        self.assertEqual(st, 201, ref)
        st, charge, _ = P.provider("GET", f"/v1/charges/{p['providerRef']}")
        body = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "charge.refunded",
                           "created": int(time.time()), "data": {"object": charge}}).encode()

        def hook(_):
            return P.call("POST", "/payments/webhook", raw=body, headers={"Provider-Signature": sign(body)})

        with cf.ThreadPoolExecutor(3) as ex:
            answers = list(ex.map(hook, range(3)))
        self.assertEqual(sorted(b["duplicate"] for st, b, _ in answers if st == 200), [False, True, True],
                         answers)
        self.assertEqual(self.payment(p["paymentId"])["status"], "REFUNDED")
        self.assertEqual(self.events_of(p["paymentId"], "payment.refunded"), 1)
        self.assertEqual(sum(1 for row in self.log_of(p["paymentId"]) if row[1] == "REFUNDED"), 1)

    def test_provider_webhooks_verify(self):
        """The simulator's own signed webhooks pass (its duplicates too)."""
        tok, _, r = self.reservation()
        st, m, _ = P.provider("POST", "/v1/admin/modes", {"card_number": OTHER_CARD, "duplicate_webhooks": True})
        self.assertEqual(st, 200, m)
        with RELAY.lock:
            mark = len(RELAY.seen)
        st, p, _ = self.pay(tok, r, card=OTHER_CARD)
        self.assertEqual((st, p["status"]), (201, "APPROVED"), p)
        wait_for(lambda: len([s for t, s in RELAY.seen[mark:] if t == "payment.succeeded"]) >= 2, 10,
                 "both deliveries of payment.succeeded")
        with RELAY.lock:
            got = [(t, s) for t, s in RELAY.seen[mark:] if t == "payment.succeeded"]
        self.assertEqual(got, [("payment.succeeded", 200)] * 2)
        self.assertEqual(self.events_of(p["paymentId"], "payment.approved"), 1)

    # ---- last: the books ----
    def test_zz_ledger_clean_and_no_card_numbers_logged(self):
        wait_for(lambda: not psql("SELECT 1 FROM payments WHERE status = 'PENDING'", service="payment"),
                 (GRACE_MS + PROVIDER_TIMEOUT_MS) / 1000 + 5, "no PENDING payment left")
        # the saga settles reservations through events: clean once they are handled
        ledger = lambda: P.call("GET", "/admin/payments/ledger", token=self.at)  # noqa: E731
        try:
            wait_for(lambda: ledger()[1].get("clean"), 20, "a clean ledger")
        except AssertionError:
            pass  # the assertions below say what differs
        # it sees a difference on either side (tampered with, then put back)
        (pid, amount), = psql("SELECT payment_id, amount FROM payments WHERE status = 'APPROVED'"
                              " ORDER BY created_at LIMIT 1", service="payment")
        (rid, named), = psql("SELECT reservation_id, payment_id FROM reservations"
                             " WHERE status = 'CONFIRMED' ORDER BY created_at LIMIT 1")
        psql(f"UPDATE payments SET amount = amount + 1 WHERE payment_id = '{pid}'", service="payment")
        psql(f"UPDATE reservations SET payment_id = 'tampered' WHERE reservation_id = '{rid}'")
        try:
            st, rep, _ = ledger()
        finally:
            psql(f"UPDATE payments SET amount = {amount} WHERE payment_id = '{pid}'", service="payment")
            psql(f"UPDATE reservations SET payment_id = '{named}' WHERE reservation_id = '{rid}'")
        self.assertEqual((st, rep.get("clean")), (200, False), rep)
        found = "\n".join(rep["differences"])
        self.assertIn(f"payment {pid} is {int(amount) + 1}", found)
        self.assertIn(f"reservation {rid} names payment tampered", found)
        self.assertIn("charged: ", found)
        st, rep, _ = ledger()
        self.assertEqual(st, 200, rep)
        self.assertTrue(rep.get("clean"), rep)
        self.assertEqual(rep.get("differences", []), [])
        self.assertEqual(rep["providerCharged"], rep["platformCharged"])
        self.assertEqual(rep["providerRefunded"], rep["platformRefunded"])
        self.assertGreater(int(rep["providerCharged"]), 0)
        _, uid_tok = mint(P)
        self.assertError(P.call("GET", "/admin/payments/ledger", token=uid_tok), 403, "PERMISSION_DENIED")
        script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "ledger_check.py")
        out = subprocess.run([sys.executable, script, P.base], capture_output=True, text=True,
                             env=dict(os.environ, BOOTSTRAP_ADMIN_LOGIN=ADMIN_LOGIN,
                                      BOOTSTRAP_ADMIN_PASSWORD=ADMIN_PASSWORD))
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertEqual(out.stdout.splitlines()[-1], "clean", out.stdout)
        log = P.log_text("payment") + P.log_text("gateway")
        for card in (OK_CARD, OTHER_CARD, DECLINED_CARD, ERROR_CARD, TIMEOUT_CARD):
            self.assertNotIn(card, log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
