#!/usr/bin/env python3
"""Payments under faults (issue 11, docs/payments.md): real processes, a
PostgreSQL cluster and a Kafka broker of this test's own
(sbservers.PrivatePostgres / PrivateKafka: the shared ones are never
stopped), namespace test_fpay, sb-paysim beside the payment service.

 a. The payment service killed -9 after the provider charged but before it
    recorded the answer (paysim delay mode: the charge is made, the answer
    held 1.5 s; the kill lands once the provider lists the charge), then
    started again: the reconciler settles the payment APPROVED (sb-paysim
    sends no webhooks here) and the saga confirms the reservation; a
    second attempt by the client is refused, nothing charged twice.
 b. The reservation service killed -9 while it applies a burst of
    payment.approved events (80 approvals made while its consumer had no
    broker, then a reservation service with the broker started and killed
    as soon as the first reservation is CONFIRMED), then started again:
    every reservation CONFIRMED once (one reservation.confirmed each).
 c. The broker killed in the middle of 100 bookings (hold, then pay),
    down 10 s while bookings go on (they must succeed: events wait in the
    outboxes), started again: every booking CONFIRMED.

After each: no PENDING payment (within the reconciler's bound), each
reservation CONFIRMED <=> exactly one APPROVED unrefunded payment (its
payment_id) with every seat SOLD, the rest still PENDING_PAYMENT with no
live payment; the ledger check clean (GET /admin/payments/ledger and
scripts/ledger_check.py); at the provider at most one unrefunded succeeded
charge per reservation and the provider's net total equal to the confirmed
reservations' amounts.

Takes about 90 s (two broker starts; the killed reservation consumer's group
session expiring, 10 s)."""
import concurrent.futures as cf
import os
import subprocess
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from booking import approved_show, mint, seat_status, wait_for  # noqa: E402
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, Platform  # noqa: E402
from sbservers import PrivateKafka, PrivatePostgres  # noqa: E402

NS = "test_fpay"  # databases sb_<svc>_test_fpay, topics sb.<x>.test_fpay
PRICE = 55000
OK_CARD = "4242424242424242"
SLOW_CARD = "5555555555554444"  # given a provider delay in test a
GRACE_MS, RECONCILE_MS, PROVIDER_TIMEOUT_MS = 3000, 500, 2000
SETTLE_S = (GRACE_MS + RECONCILE_MS + PROVIDER_TIMEOUT_MS) / 1000  # the reconciler's bound
PG = KAFKA = P = None
ADMIN = None


def setUpModule():
    global PG, KAFKA, P, ADMIN
    PG, KAFKA = PrivatePostgres(), PrivateKafka()
    try:
        PG.start()
        KAFKA.start()
        P = Platform(env={"DATABASE_URL": PG.url(), "KAFKA_BROKERS": KAFKA.brokers, "SB_NAMESPACE": NS,
                          "PAYMENT_PENDING_GRACE_MS": str(GRACE_MS), "PAYMENT_RECONCILE_MS": str(RECONCILE_MS),
                          "PROVIDER_TIMEOUT_MS": str(PROVIDER_TIMEOUT_MS), "GATEWAY_TIMEOUT_MS": "15000",
                          "REDIS_TIMEOUT_MS": "10000", "LOGIN_RATE_LIMIT": "1000000"}).__enter__()
        # the simulator again, empty, sending no webhooks: a charge whose
        # answer was lost is settled by the reconciler alone (a webhook would
        # settle it at once, before the kill of test a could land)
        P.kill("paysim")
        P.launch("paysim", {"PAYSIM_WEBHOOK_URL": ""})
        P.wait_ready()
        ADMIN = P.login(ADMIN_LOGIN, ADMIN_PASSWORD)["accessToken"]
    except BaseException:
        if P:
            P.__exit__(None, None, None)
        KAFKA.close()
        PG.close()
        raise


def tearDownModule():
    try:
        if P:
            P.__exit__(None, None, None)
            print(f"logs: {P.logdir}", file=sys.stderr)
    finally:
        KAFKA.close()
        PG.close()


def db(service):
    return f"sb_{service}_{NS}"


def q(sql, service):
    return PG.query(sql, db(service))


def in_list(ids):
    return ",".join(f"'{i}'" for i in ids)


class PaymentFaults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        _, pt = P.user("PLANNER")
        _, (cls.sid,) = approved_show(P, pt["accessToken"], ADMIN,
                                      grades=[{"grade": "R", "price": PRICE, "seatCount": 240}],
                                      timeout=120)  # a new broker: the first group join is slow
        cls.free_seats = sorted(seat_status(P, cls.sid))
        cls.seat_lock = threading.Lock()
        cls.all_rids = []  # every reservation of the module (the books cover them all)

    # ---- the client ----
    def hold(self):
        """A fresh member's one-seat PENDING_PAYMENT reservation: (token, reservation)."""
        with self.seat_lock:
            seat = self.free_seats.pop()
        _, tok = mint(P)
        st, r, _ = P.call("POST", "/reservations", {"scheduleId": self.sid, "seatIds": [seat]}, token=tok)
        self.assertEqual(st, 201, r)
        with self.seat_lock:
            self.all_rids.append(r["reservationId"])
        return tok, r

    def pay(self, tok, r, card=OK_CARD, key=None):
        body = {"reservationId": r["reservationId"], "amount": int(r["amount"]), "method": "CARD",
                "cardNumber": card}
        return P.call("POST", "/payments", body, token=tok, headers={"Idempotency-Key": key or f"k-{uuid.uuid4()}"})

    def book(self, _=None):
        """Hold, then pay (card 4242...): the reservation id."""
        tok, r = self.hold()
        st, p, _ = self.pay(tok, r)
        self.assertEqual((st, p.get("status")), (201, "APPROVED"), p)
        return r["reservationId"]

    # ---- the state ----
    def reservations(self, rids):
        return {r[0]: (r[1], r[2]) for r in q("SELECT reservation_id, status, payment_id FROM reservations"
                                              f" WHERE reservation_id IN ({in_list(rids)})", "reservation")}

    def payments(self, rids):
        """{reservation id: [(payment id, status, refunded amount)]}."""
        out = {}
        for rid, pid, st, ref in q("SELECT reservation_id, payment_id, status, refunded_amount FROM payments"
                                   f" WHERE reservation_id IN ({in_list(rids)})", "payment"):
            out.setdefault(rid, []).append((pid, st, int(ref)))
        return out

    def wait_confirmed(self, rids, timeout=90):
        """Until every reservation of rids is CONFIRMED."""
        deadline = time.time() + timeout
        while True:
            states = self.reservations(rids)
            left = [rid for rid in rids if states.get(rid, ("?",))[0] != "CONFIRMED"]
            if not left:
                return
            if time.time() > deadline:
                self.fail(f"{len(left)} of {len(rids)} not CONFIRMED after {timeout}s: "
                          f"{[(rid, states.get(rid)) for rid in left[:5]]}")
            time.sleep(0.2)

    def check_books(self):
        """The final, consistent state of every reservation of the module."""
        rids = list(self.all_rids)
        wait_for(lambda: q("SELECT count(*) FROM payments WHERE status = 'PENDING'", "payment") == [["0"]],
                 SETTLE_S + 5, "no PENDING payment left")
        states, pays = self.reservations(rids), self.payments(rids)
        self.assertEqual(set(states), set(rids))
        sold = {}
        for rid, st in q("SELECT reservation_id, status FROM seats"
                         f" WHERE reservation_id IN ({in_list(rids)})", "reservation"):
            sold.setdefault(rid, set()).add(st)
        for rid in rids:
            status, payment_id = states[rid]
            live = [p for p in pays.get(rid, []) if p[1] == "APPROVED" and p[2] == 0]
            self.assertLessEqual(len(live), 1, (rid, pays.get(rid)))
            if status == "CONFIRMED":
                self.assertEqual([p[0] for p in live], [payment_id], (rid, pays.get(rid)))
                self.assertEqual(sold.get(rid), {"SOLD"}, rid)
            else:
                self.assertEqual((status, live), ("PENDING_PAYMENT", []), (rid, pays.get(rid)))
        # each CONFIRMED reservation announced once
        confirmed = [rid for rid in rids if states[rid][0] == "CONFIRMED"]
        self.assertEqual(q("SELECT count(*), count(DISTINCT aggregate_id) FROM sb_outbox"
                           " WHERE type = 'reservation.confirmed'", "reservation"),
                         [[str(len(confirmed))] * 2])
        # the ledger check, both ways
        st, rep, _ = P.call("GET", "/admin/payments/ledger", token=ADMIN)
        self.assertEqual(st, 200, rep)
        self.assertTrue(rep.get("clean"), rep)
        script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "ledger_check.py")
        out = subprocess.run([sys.executable, script, P.base], capture_output=True, text=True,
                             env=dict(os.environ, BOOTSTRAP_ADMIN_LOGIN=ADMIN_LOGIN,
                                      BOOTSTRAP_ADMIN_PASSWORD=ADMIN_PASSWORD))
        self.assertEqual((out.returncode, out.stdout.splitlines()[-1:]), (0, ["clean"]), out.stdout + out.stderr)
        # nobody charged twice: the provider's own books
        st, charges, _ = P.provider("GET", "/v1/admin/charges")
        self.assertEqual(st, 200, charges)
        rid_of = {p[0]: rid for rid, ps in pays.items() for p in ps}
        held = {}
        for c in charges["data"]:
            if c["status"] == "succeeded" and int(c["amount_refunded"]) < int(c["amount"]):
                rid = rid_of.get(c["reference"], c["reference"])
                held[rid] = held.get(rid, 0) + 1
        self.assertEqual({rid for rid, n in held.items() if n > 1}, set(), "charged twice")
        self.assertEqual(set(held), set(confirmed))
        st, tot, _ = P.provider("GET", "/v1/admin/totals")
        self.assertEqual(int(tot["charged"]) - int(tot["refunded"]), PRICE * len(confirmed), tot)
        return confirmed

    # ---- a: the payment service killed between the charge and its commit ----
    def test_a_payment_killed_after_the_charge(self):
        tok, r = self.hold()
        rid = r["reservationId"]
        st, m, _ = P.provider("POST", "/v1/admin/modes", {"card_number": SLOW_CARD, "delay_ms": 1500})
        self.assertEqual(st, 200, m)
        before = P.provider("GET", "/v1/admin/totals")[1]
        try:
            with cf.ThreadPoolExecutor(1) as ex:
                call = ex.submit(self.pay, tok, r, SLOW_CARD)
                wait_for(lambda: q(f"SELECT 1 FROM payments WHERE reservation_id = '{rid}'"
                                   " AND status = 'PENDING'", "payment"), 10, "PENDING committed")
                (pid,) = q(f"SELECT payment_id FROM payments WHERE reservation_id = '{rid}'", "payment")[0]
                # the provider has made the charge and holds its answer
                wait_for(lambda: P.provider("GET", f"/v1/charges?idempotency_key=pay_{pid}")[1]["data"], 5,
                         "the charge made")
                P.kill("payment")
                st, body, _ = call.result()
            self.assertEqual(st, 503, body)  # the call died with the service
        finally:
            P.provider("DELETE", "/v1/admin/modes")
        self.assertEqual(q(f"SELECT status FROM payments WHERE payment_id = '{pid}'", "payment"), [["PENDING"]])
        t0 = time.time()
        P.start_service("payment")
        P.wait_ready()
        # the client tries again with a new key: refused while one payment lives
        st, again, _ = self.pay(tok, r)
        self.assertIn(st, (400, 409), again)
        self.wait_confirmed([rid], SETTLE_S + 20)
        print(f"\na: kill -9 between charge and commit: CONFIRMED {time.time() - t0:.2f}s after the restart",
              file=sys.stderr)
        self.assertEqual(self.reservations([rid])[rid], ("CONFIRMED", pid))
        self.assertEqual(P.provider("GET", "/v1/admin/totals")[1]["charges"] - before["charges"], 1)
        self.check_books()

    # ---- b: the reservation service killed while confirming ----
    def test_b_reservation_killed_while_confirming(self):
        n = 80
        # a reservation service whose consumer has no broker: the approvals wait in Kafka
        P.stop("reservation")
        P.launch("reservation", {"KAFKA_BROKERS": "127.0.0.1:1"})
        P.wait_ready()
        with cf.ThreadPoolExecutor(16) as ex:
            rids = list(ex.map(self.book, range(n)))
        self.assertEqual(self.reservations(rids), {rid: ("PENDING_PAYMENT", "") for rid in rids})
        P.kill("reservation")
        P.launch("reservation")
        deadline = time.time() + 60
        while True:
            done = int(q("SELECT count(*) FROM reservations WHERE status = 'CONFIRMED'"
                         f" AND reservation_id IN ({in_list(rids)})", "reservation")[0][0])
            if done:
                break
            self.assertLess(time.time(), deadline, "the reservation service never confirmed")
            time.sleep(0.005)
        P.kill("reservation")
        print(f"\nb: reservation killed (SIGKILL) with {done} of {n} confirmed", file=sys.stderr)
        self.assertLess(done, n, "killed too late: every reservation was already confirmed")
        t0 = time.time()
        P.start_service("reservation")
        P.wait_ready()
        self.wait_confirmed(rids)
        print(f"b: all {n} CONFIRMED {time.time() - t0:.2f}s after the restart", file=sys.stderr)
        self.check_books()

    # ---- c: the broker down 10 s in the middle of 100 bookings ----
    def test_c_broker_down_during_bookings(self):
        with cf.ThreadPoolExecutor(8) as ex:
            rids = list(ex.map(self.book, range(30)))
            KAFKA.kill()
            t_down = time.monotonic()
            rids += list(ex.map(self.book, range(40)))  # the events wait in the outboxes
            time.sleep(max(0.0, 10 - (time.monotonic() - t_down)))
            restart = ex.submit(KAFKA.start)
            rids += list(ex.map(self.book, range(30)))
            restart.result()
        t_up = time.monotonic()
        print(f"\nc: broker down {t_up - t_down:.1f}s (restart included), 100 bookings went on", file=sys.stderr)
        self.wait_confirmed(rids, 120)
        print(f"c: all 100 CONFIRMED {time.monotonic() - t_up:.2f}s after the broker answered", file=sys.stderr)
        self.check_books()


if __name__ == "__main__":
    unittest.main(verbosity=2)
