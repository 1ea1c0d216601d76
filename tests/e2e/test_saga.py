#!/usr/bin/env python3
"""The booking saga, reservation side (issue 11, docs/payments.md §3), driven
with real events: payment.approved and payment.refunded delivered through
the reservation service's inbox (POST /events/reservation, as the payment
service's would arrive from Kafka), performance.cancelled and
member.withdrawn made by the real performance and member services and
carried by Kafka. Asserted through the API, the seat map and the
reservation service's outbox:

  approval        CONFIRMED, seats SOLD, paymentId, a log row, one
                  reservation.confirmed; the same event again (one effect),
                  the same payment under a new event id (nothing), another
                  payment (refused), a wrong amount (refused, still pending)
  refund          payment.refunded: CANCELLED, seats free, was_paid
  cancel paid     DELETE of a CONFIRMED reservation while the payment
                  service cannot refund: 503, nothing changed
  full flow       with the payment service and sb-paysim: hold, POST
                  /payments (card 4242...), CONFIRMED through Kafka, GET
                  /reservations/{id}/payment, DELETE refunds then cancels; a
                  cancelled performance's paid reservation refunded; a
                  payment refunded by DELETE /payments/{id} cancels its
                  reservation; a charge the provider confirms after the
                  hold's deadline refused and refunded
  mass cancels    a cancelled performance with 500 reservations (some paid):
                  all CANCELLED in bounded batches, seats free, was_paid for
                  the paid ones; 300 approvals racing a cancellation; a
                  withdrawn member's reservations
  expiry          an approval after the deadline: stays EXPIRED, refused;
                  approvals racing the deadline (and rival buyers of the same
                  seats): each reservation CONFIRMED with SOLD seats or
                  EXPIRED with a refusal, never both

Run by CTest with every real service binary and the real PostgreSQL/Redis/
Kafka; see sbplatform.py."""
import concurrent.futures as cf
import datetime as dt
import os
import random
import subprocess
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from booking import (approved_show, deliver, mint, outbox, pb, pb_fields, psql, seat_status,  # noqa: E402
                     seat_status_within_lag, wait_for)
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, Platform  # noqa: E402

P = None
ADMIN = None
EXPIRY_TTL_S = 2  # the holds of the expiry tests
OK_CARD = "4242424242424242"
SLOW_CARD = "5555555555554444"  # given a provider delay longer than the hold


def setUpModule():
    global P, ADMIN
    P = Platform(env={"GATEWAY_TIMEOUT_MS": "30000", "REDIS_TIMEOUT_MS": "10000",
                      "RESV_CANCEL_BATCH": "200"}).__enter__()
    try:
        ADMIN = P.login(ADMIN_LOGIN, ADMIN_PASSWORD)["accessToken"]
    except BaseException:
        P.__exit__(None, None, None)
        raise


def tearDownModule():
    P.__exit__(None, None, None)
    print(f"logs: {P.logdir}", file=sys.stderr)


def approval(r, payment=None, amount=None, user=None):
    """A PaymentApproved for reservation r (its amount and member unless told)."""
    return pb((1, payment or str(uuid.uuid4())), (2, r["reservationId"]), (3, user or r["userId"]),
              (4, int(r["amount"]) if amount is None else amount))


def refund(r, payment):
    return pb((1, payment), (2, r["reservationId"]), (3, r["userId"]), (4, int(r["amount"])),
              (5, "refunded by the provider"))


def types(rid):
    return [t for t, _ in outbox(rid)]


def event(rid, type_):
    """The payload fields of rid's only event of type_."""
    found = [f for t, f in outbox(rid) if t == type_]
    assert len(found) == 1, (type_, types(rid))
    return found[0]


def text(fields, n):
    return fields[n][0].decode() if n in fields else ""


def seats_of(sid, rid):
    """{seat id: status} of the seats reservation rid has in schedule sid."""
    return dict(psql(f"SELECT seat_id, status FROM seats WHERE schedule_id = '{sid}'"
                     f" AND reservation_id = '{rid}'"))


def paysim_up():
    try:
        return P.provider("GET", "/healthz", timeout=2)[0] == 200
    except OSError:
        return False


def rfc3339(s):
    return dt.datetime.strptime(s.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


class Saga(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.planner, cls.pt = P.user("PLANNER")

    def show(self, **kw):
        return approved_show(P, self.pt["accessToken"], ADMIN, **kw)

    def hold(self, sid, seats, token=None):
        uid, tok = (None, token) if token else mint(P)
        st, r, _ = P.call("POST", "/reservations", {"scheduleId": sid, "seatIds": seats}, token=tok)
        self.assertEqual(st, 201, r)
        return r, tok

    def deliver(self, type_, aggregate, payload, event_id=None):
        st, body, eid = deliver(P, ADMIN, "reservation", type_, aggregate, payload, event_id)
        self.assertEqual(st, 200, body)
        return body, eid

    def get(self, rid, tok):
        st, r, _ = P.call("GET", f"/reservations/{rid}", token=tok)
        self.assertEqual(st, 200, r)
        return r

    # ---- payment.approved / payment.refunded ----
    def test_approval_confirms_once_and_refund_cancels(self):
        _, (sid,) = self.show()
        r, tok = self.hold(sid, ["VIP-A-1", "VIP-A-2"])
        rid, pay = r["reservationId"], str(uuid.uuid4())
        body, eid = self.deliver("payment.approved", pay, approval(r, pay))
        self.assertFalse(body.get("duplicate"), body)
        g = self.get(rid, tok)
        self.assertEqual((g["status"], g["paymentId"], g["version"]), ("CONFIRMED", pay, "2"), g)
        self.assertEqual([(e["fromStatus"], e["toStatus"], e["actor"], e["reason"]) for e in g["log"][1:]],
                         [("PENDING_PAYMENT", "CONFIRMED", "system", "payment approved")])
        self.assertEqual(seats_of(sid, rid), {"VIP-A-1": "SOLD", "VIP-A-2": "SOLD"})
        self.assertEqual(seat_status(P, sid)["VIP-A-1"], "SOLD")
        conf = event(rid, "reservation.confirmed")
        self.assertEqual((text(conf, 1), text(conf, 5), conf[6][0]), (rid, pay, 300000))
        snap = pb_fields(conf[20][0])
        self.assertEqual((text(snap, 7), text(snap, 11), snap[12][0]), ("CONFIRMED", pay, 2))

        # the same event again: a duplicate, no second effect
        body, _ = self.deliver("payment.approved", pay, approval(r, pay), event_id=eid)
        self.assertTrue(body["duplicate"], body)
        # the same payment re-sent under a new event id: nothing to do
        self.deliver("payment.approved", pay, approval(r, pay))
        # another payment for the paid reservation: refused, for a refund
        other = str(uuid.uuid4())
        self.deliver("payment.approved", other, approval(r, other))
        self.assertEqual(types(rid), ["reservation.created", "reservation.confirmed",
                                      "reservation.payment_refused"])
        ref = event(rid, "reservation.payment_refused")
        self.assertEqual((text(ref, 1), text(ref, 2), text(ref, 3), ref[4][0], text(ref, 5)),
                         (rid, other, r["userId"], 300000, "CONFIRMED"))
        self.assertIn("already paid", text(ref, 6))
        self.assertEqual(self.get(rid, tok)["version"], "2")

        # a refund of another payment: nothing; of its payment: CANCELLED, seats free
        self.deliver("payment.refunded", other, refund(r, other))
        self.assertEqual(self.get(rid, tok)["status"], "CONFIRMED")
        self.deliver("payment.refunded", pay, refund(r, pay))
        g = self.get(rid, tok)
        self.assertEqual((g["status"], g["paymentId"], g["version"]), ("CANCELLED", pay, "3"), g)
        self.assertEqual((g["log"][-1]["fromStatus"], g["log"][-1]["toStatus"], g["log"][-1]["actor"]),
                         ("CONFIRMED", "CANCELLED", "system"))
        self.assertEqual(seats_of(sid, rid), {})
        # the refund came as an event, not through the gateway: the gateway's
        # copy of the map follows within the cached reads' lag bound
        seat_status_within_lag(P, sid, "VIP-A-2", "AVAILABLE")
        can = event(rid, "reservation.cancelled")
        self.assertEqual((can[6][0], text(can, 7), can[8][0]), (1, pay, 300000), can)
        # the approval once more (a replay): nothing, no refusal for a payment it had
        self.deliver("payment.approved", pay, approval(r, pay))
        self.assertEqual(types(rid).count("reservation.payment_refused"), 1)

    def test_approval_refused_for_wrong_amount_cancelled_or_unknown(self):
        _, (sid,) = self.show()
        r, tok = self.hold(sid, ["R-A-1"])
        rid = r["reservationId"]
        self.deliver("payment.approved", rid, approval(r, amount=int(r["amount"]) - 1))
        ref = event(rid, "reservation.payment_refused")
        self.assertEqual(text(ref, 5), "PENDING_PAYMENT")
        self.assertIn("90000", text(ref, 6))
        self.assertEqual(self.get(rid, tok)["status"], "PENDING_PAYMENT")
        self.assertEqual(seats_of(sid, rid), {"R-A-1": "HELD"})
        # by another member: refused
        self.deliver("payment.approved", rid, approval(r, user=str(uuid.uuid4())))
        self.assertEqual(types(rid).count("reservation.payment_refused"), 2)
        # cancelled by its member, then paid: refused, stays CANCELLED
        self.assertEqual(P.call("DELETE", f"/reservations/{rid}", token=tok)[0], 200)
        self.deliver("payment.approved", rid, approval(r))
        self.assertEqual(text([f for t, f in outbox(rid) if t == "reservation.payment_refused"][-1], 5),
                         "CANCELLED")
        self.assertEqual(self.get(rid, tok)["status"], "CANCELLED")
        self.assertEqual(seats_of(sid, rid), {})
        # an unknown reservation: refused under its id
        ghost = str(uuid.uuid4())
        self.deliver("payment.approved", ghost, pb((1, str(uuid.uuid4())), (2, ghost), (4, 1000)))
        self.assertEqual(text(event(ghost, "reservation.payment_refused"), 5), "NOT_FOUND")
        # malformed: a dead letter, 400
        st, body, _ = deliver(P, ADMIN, "reservation", "payment.approved", "x", pb((1, "p"), (2, "nope")))
        self.assertEqual(st, 400, body)

    # ---- cancelling a paid reservation ----
    def test_cancel_paid_while_payment_cannot_refund_changes_nothing(self):
        _, (sid,) = self.show()
        r, tok = self.hold(sid, ["VIP-A-3"])
        rid, pay = r["reservationId"], str(uuid.uuid4())
        self.deliver("payment.approved", pay, approval(r, pay))
        P.stop("payment")
        try:
            st, body, _ = P.call("DELETE", f"/reservations/{rid}", token=tok)
        finally:
            P.launch("payment")
            P.wait_ready()
            # the reservation service's channel to payment comes back on its reconnect
            # backoff (RECONNECT_INITIAL_MS), not at once: the next test must find the
            # platform whole, i.e. a call through that channel answered again
            wait_for(lambda: P.call("GET", f"/reservations/{rid}/payment", token=tok)[0] != 503, 30,
                     "the reservation service reaches the payment service again")
        self.assertEqual(st, 503, body)
        self.assertEqual(body["error"]["code"], "UNAVAILABLE", body)
        g = self.get(rid, tok)
        self.assertEqual((g["status"], g["version"]), ("CONFIRMED", "2"))
        self.assertEqual(seats_of(sid, rid), {"VIP-A-3": "SOLD"})
        self.assertNotIn("reservation.cancelled", types(rid))
        # GetReservationPayment: the owner check comes first
        _, otok = mint(P)
        self.assertEqual(P.call("GET", f"/reservations/{rid}/payment", token=otok)[0], 404)
        self.assertEqual(P.call("GET", "/reservations/nope/payment", token=tok)[0], 400)
        self.assertEqual(P.call("GET", f"/reservations/{rid}/payment")[0], 401)

    # ---- the whole saga with the payment service and sb-paysim ----
    def pay(self, r, tok, card=OK_CARD):
        st, p, _ = P.call("POST", "/payments", {"reservationId": r["reservationId"], "amount": int(r["amount"]),
                                                "method": "CARD", "cardNumber": card},
                          token=tok, headers={"Idempotency-Key": f"saga-{uuid.uuid4()}"})
        self.assertEqual(st, 201, p)
        return p

    def payment_of(self, rid, tok):
        st, p, _ = P.call("GET", f"/reservations/{rid}/payment", token=tok)
        self.assertEqual(st, 200, p)
        return p

    def test_full_flow_pay_then_cancel_refunds(self):
        _, (sid,) = self.show(grades=[{"grade": "R", "price": 55000, "seatCount": 20}])
        r, tok = self.hold(sid, ["R-A-1", "R-A-2"])
        rid = r["reservationId"]
        before = P.provider("GET", "/v1/admin/totals")[1]
        pay = self.pay(r, tok)
        self.assertEqual(pay["status"], "APPROVED", pay)
        # payment.approved through Kafka: CONFIRMED, seats SOLD
        wait_for(lambda: self.get(rid, tok)["status"] == "CONFIRMED", 30, "confirmed by payment.approved")
        g = self.get(rid, tok)
        self.assertEqual(g["paymentId"], pay["paymentId"])
        self.assertEqual(seats_of(sid, rid), {"R-A-1": "SOLD", "R-A-2": "SOLD"})
        # its payment: the owner and an admin; nobody else
        p = self.payment_of(rid, tok)
        self.assertEqual((p["paymentId"], p["status"], p["amount"]), (pay["paymentId"], "APPROVED", "110000"))
        self.assertEqual(self.payment_of(rid, ADMIN)["paymentId"], pay["paymentId"])
        _, otok = mint(P)
        self.assertEqual(P.call("GET", f"/reservations/{rid}/payment", token=otok)[0], 404)
        # DELETE: refunded at the provider, then CANCELLED, seats free
        st, c, _ = P.call("DELETE", f"/reservations/{rid}", token=tok)
        self.assertEqual((st, c.get("status")), (200, "CANCELLED"), c)
        self.assertEqual(seats_of(sid, rid), {})
        self.assertEqual(seat_status(P, sid)["R-A-1"], "AVAILABLE")
        self.assertEqual(self.payment_of(rid, tok)["status"], "REFUNDED")
        after = P.provider("GET", "/v1/admin/totals")[1]
        self.assertEqual((int(after["charged"]) - int(before["charged"]),
                          int(after["refunded"]) - int(before["refunded"])), (110000, 110000))
        can = event(rid, "reservation.cancelled")
        self.assertEqual((can[6][0], text(can, 7)), (1, pay["paymentId"]))
        # again: the same answer; payment.refunded (Kafka) changes nothing more
        st, c2, _ = P.call("DELETE", f"/reservations/{rid}", token=tok)
        self.assertEqual((st, c2["status"], c2["version"]), (200, "CANCELLED", c["version"]))
        time.sleep(1)
        self.assertEqual(self.get(rid, tok)["version"], c["version"])
        self.assertEqual(types(rid).count("reservation.cancelled"), 1)

    def test_full_flow_cancelled_performance_refunds_the_paid(self):
        perf, (sid,) = self.show(grades=[{"grade": "R", "price": 55000, "seatCount": 20}])
        paid, ptok = self.hold(sid, ["R-A-1"])
        held, _ = self.hold(sid, ["R-A-2"])
        pay = self.pay(paid, ptok)
        wait_for(lambda: self.get(paid["reservationId"], ptok)["status"] == "CONFIRMED", 30, "confirmed")
        st, body, _ = P.call("POST", f"/performances/{perf['performanceId']}/cancel", {"reason": "flood"},
                             token=self.pt["accessToken"])
        self.assertEqual(st, 200, body)
        for r in (paid, held):
            wait_for(lambda: self.get(r["reservationId"], ADMIN)["status"] == "CANCELLED", 30, "cancelled")
        # reservation.cancelled (was_paid) -> the payment service refunds
        wait_for(lambda: self.payment_of(paid["reservationId"], ptok)["status"] == "REFUNDED", 30,
                 "refunded after the performance was cancelled")
        self.assertEqual(self.payment_of(paid["reservationId"], ptok)["paymentId"], pay["paymentId"])
        self.assertEqual(psql(f"SELECT count(*) FROM seats WHERE schedule_id = '{sid}' AND status <> 'AVAILABLE'"),
                         [["0"]])

    def test_full_flow_payment_refunded_elsewhere_cancels(self):
        """DELETE /payments/{id} (the payment service alone): its
        payment.refunded, through Kafka, cancels the reservation, as it
        finishes a cancel whose second step never ran."""
        _, (sid,) = self.show(grades=[{"grade": "R", "price": 55000, "seatCount": 20}])
        r, tok = self.hold(sid, ["R-A-3"])
        rid = r["reservationId"]
        pay = self.pay(r, tok)
        wait_for(lambda: self.get(rid, tok)["status"] == "CONFIRMED", 30, "confirmed")
        st, p, _ = P.call("DELETE", f"/payments/{pay['paymentId']}", token=tok)
        self.assertEqual((st, p.get("status")), (200, "REFUNDED"), p)
        wait_for(lambda: self.get(rid, tok)["status"] == "CANCELLED", 30, "cancelled by payment.refunded")
        g = self.get(rid, tok)
        self.assertEqual((g["log"][-1]["actor"], g["log"][-1]["reason"]), ("system", "payment refunded"))
        self.assertEqual(seats_of(sid, rid), {})
        self.assertEqual(event(rid, "reservation.cancelled")[6][0], 1)

    # ---- mass cancels ----
    def test_performance_cancelled_with_500_reservations(self):
        n, paid = 500, 60
        perf, (sid,) = self.show(grades=[{"grade": "S", "price": 50000, "seatCount": 520}])
        seats = [f"S-{chr(65 + i // 20)}-{i % 20 + 1}" for i in range(n)]
        with cf.ThreadPoolExecutor(8) as ex:
            held = list(ex.map(lambda s: self.hold(sid, [s])[0], seats))
        ids = {r["reservationId"] for r in held}
        for r in held[:paid]:
            self.deliver("payment.approved", r["reservationId"], approval(r))
        t0 = time.time()
        st, body, _ = P.call("POST", f"/performances/{perf['performanceId']}/cancel", {"reason": "storm"},
                             token=self.pt["accessToken"])
        self.assertEqual(st, 200, body)
        wait_for(lambda: psql(f"SELECT count(*) FROM reservations WHERE performance_id ="
                              f" '{perf['performanceId']}' AND status = 'CANCELLED'")[0][0] == str(n), 60,
                 "every reservation cancelled")
        took = time.time() - t0
        self.assertEqual(psql(f"SELECT count(*) FROM seats WHERE schedule_id = '{sid}'"
                              " AND status <> 'AVAILABLE'"), [["0"]])
        rows = psql("SELECT aggregate_id, encode(envelope, 'hex') FROM sb_outbox"
                    " WHERE type = 'reservation.cancelled' AND aggregate_id IN (%s)"
                    % ",".join(f"'{i}'" for i in ids))
        self.assertEqual(len(rows), n)
        paid_ids = {r["reservationId"] for r in held[:paid]}
        was_paid = {a for a, h in rows if pb_fields(pb_fields(bytes.fromhex(h))[7][0]).get(6, [0])[0] == 1}
        self.assertEqual(was_paid, paid_ids)
        # batches: the event's own (200), then the job's; its row is gone
        self.assertEqual(psql("SELECT count(*) FROM resv_mass_cancels"), [["0"]])
        self.assertIn("the rest left to the mass-cancel job", P.log_text("reservation"))
        logs = psql(f"SELECT count(*) FROM reservation_log WHERE to_status = 'CANCELLED'"
                    f" AND reason = 'performance cancelled' AND reservation_id IN (%s)"
                    % ",".join(f"'{i}'" for i in ids))
        self.assertEqual(logs, [[str(n)]])
        print(f"\n  performance cancelled: {n} reservations cancelled in {took:.2f}s", file=sys.stderr)

    def test_approvals_racing_a_performance_cancel(self):
        """300 approvals delivered while the performance's cancellation (a
        first batch, then the job) runs: every reservation ends CANCELLED;
        each approval either confirmed it first (then was_paid, the payment
        refunded) or was refused, never both, never neither."""
        n = 300
        perf, (sid,) = self.show(grades=[{"grade": "S", "price": 1000, "seatCount": n}])
        seats = [f"S-{chr(65 + i // 20)}-{i % 20 + 1}" for i in range(n)]
        with cf.ThreadPoolExecutor(8) as ex:
            held = list(ex.map(lambda s: self.hold(sid, [s])[0], seats))
        random.shuffle(held)

        def approve(r):
            return deliver(P, ADMIN, "reservation", "payment.approved", r["reservationId"], approval(r))[0]

        with cf.ThreadPoolExecutor(16) as ex:
            approvals = [ex.submit(approve, r) for r in held]
            time.sleep(0.2)
            st, body, _ = P.call("POST", f"/performances/{perf['performanceId']}/cancel", {"reason": "race"},
                                 token=self.pt["accessToken"])
            self.assertEqual(st, 200, body)
            self.assertEqual([f.result() for f in approvals], [200] * n)
        wait_for(lambda: psql(f"SELECT count(*) FROM reservations WHERE schedule_id = '{sid}'"
                              " AND status = 'CANCELLED'")[0][0] == str(n), 60, "every reservation cancelled")
        ids = ",".join(f"'{r['reservationId']}'" for r in held)
        rows = psql(f"SELECT aggregate_id, type, encode(envelope, 'hex') FROM sb_outbox"
                    f" WHERE aggregate_id IN ({ids}) ORDER BY id")
        by = {}
        for a, t, h in rows:
            by.setdefault(a, []).append((t, pb_fields(pb_fields(bytes.fromhex(h))[7][0])))
        confirmed = 0
        for r in held:
            evs = by[r["reservationId"]]
            ts = [t for t, _ in evs]
            cancelled = [f for t, f in evs if t == "reservation.cancelled"]
            self.assertEqual(len(cancelled), 1, ts)
            if "reservation.confirmed" in ts:
                confirmed += 1
                self.assertNotIn("reservation.payment_refused", ts)
                self.assertEqual(cancelled[0].get(6, [0])[0], 1, ts)
            else:
                self.assertEqual(ts.count("reservation.payment_refused"), 1, ts)
                self.assertNotIn(6, cancelled[0])
        self.assertEqual(psql(f"SELECT count(*) FROM seats WHERE schedule_id = '{sid}' AND status <> 'AVAILABLE'"),
                         [["0"]])
        self.assertEqual(psql("SELECT count(*) FROM resv_mass_cancels"), [["0"]])
        print(f"\n  approvals racing a cancellation: {confirmed} confirmed then cancelled (was_paid),"
              f" {n - confirmed} refused", file=sys.stderr)

    def test_member_withdrawn_cancels_their_reservations(self):
        _, (s1, s2) = self.show(schedules=2)
        m, toks = P.user("USER")
        tok = toks["accessToken"]
        r1, _ = self.hold(s1, ["VIP-A-1"], token=tok)
        r2, _ = self.hold(s2, ["VIP-A-1", "VIP-A-2"], token=tok)
        pay = str(uuid.uuid4())
        self.deliver("payment.approved", pay, approval(r2, pay))
        other, _ = self.hold(s1, ["VIP-A-2"])
        st, body, _ = P.call("DELETE", f"/members/{m['userId']}", token=tok)
        self.assertEqual(st, 200, body)
        for r in (r1, r2):
            wait_for(lambda: self.get(r["reservationId"], ADMIN)["status"] == "CANCELLED", 30,
                     f"reservation {r['reservationId']} cancelled")
        self.assertEqual(seats_of(s1, r1["reservationId"]), {})
        self.assertEqual(seats_of(s2, r2["reservationId"]), {})
        self.assertEqual(event(r2["reservationId"], "reservation.cancelled")[6][0], 1)
        self.assertNotIn(6, event(r1["reservationId"], "reservation.cancelled"))
        self.assertEqual(self.get(other["reservationId"], ADMIN)["status"], "PENDING_PAYMENT")

    # ---- the deadline (holds of EXPIRY_TTL_S) ----
    def test_z_expiry(self):
        P.restart("reservation", {"HOLD_TTL_S": str(EXPIRY_TTL_S)})
        try:
            self.approval_after_expiry()
            self.approval_waiting_across_the_deadline()
            self.provider_slower_than_the_hold()
            self.approvals_racing_expiry()
        finally:
            P.restart("reservation")

    def approval_after_expiry(self):
        _, (sid,) = self.show()
        r, tok = self.hold(sid, ["VIP-A-1"])
        rid = r["reservationId"]
        wait_for(lambda: psql(f"SELECT status FROM reservations WHERE reservation_id = '{rid}'")
                 == [["EXPIRED"]], 10, "the expiry job ended the hold")
        self.deliver("payment.approved", rid, approval(r))
        ref = event(rid, "reservation.payment_refused")
        self.assertEqual(text(ref, 5), "EXPIRED")
        g = self.get(rid, tok)
        self.assertEqual((g["status"], g.get("paymentId", "")), ("EXPIRED", ""))
        self.assertNotIn("reservation.confirmed", types(rid))
        self.assertEqual(seats_of(sid, rid), {})

    def approval_waiting_across_the_deadline(self):
        """An approval that arrives in time but waits for the reservation's
        row lock (held by another transaction that changes nothing) until
        past the deadline: refused, the reservation ends EXPIRED."""
        _, (sid,) = self.show()
        r, tok = self.hold(sid, ["VIP-A-3"])
        rid = r["reservationId"]
        deadline = rfc3339(r["expiresAt"])
        db = f"sb_reservation_{os.environ.get('SB_NAMESPACE', 'test')}"
        url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        hold_for = deadline - time.time() + 0.5
        locker = subprocess.Popen(["psql", f"{url.rsplit('/', 1)[0]}/{db}", "-v", "ON_ERROR_STOP=1", "-qAtc",
                                   f"BEGIN; SELECT 1 FROM reservations WHERE reservation_id = '{rid}' FOR UPDATE;"
                                   f" SELECT pg_sleep({hold_for:.3f}); COMMIT;"],
                                  stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.2)
            self.assertLess(time.time(), deadline - 0.5)
            self.deliver("payment.approved", rid, approval(r))  # waits for the lock
            self.assertGreater(time.time(), deadline)
        finally:
            locker.wait(timeout=30)
        ref = event(rid, "reservation.payment_refused")
        self.assertEqual(text(ref, 5), "EXPIRED")
        self.assertNotIn("reservation.confirmed", types(rid))
        wait_for(lambda: psql(f"SELECT status FROM reservations WHERE reservation_id = '{rid}'")
                 == [["EXPIRED"]], 10, "the expiry job ended the hold")
        self.assertEqual(seats_of(sid, rid), {})

    def provider_slower_than_the_hold(self):
        """A real payment whose charge succeeds after the hold's deadline:
        refused by the reservation, refunded by the payment service."""
        _, (sid,) = self.show()
        # the provider's answer, not its webhook (sent at once), must settle
        # the payment: a simulator without webhooks until the refund is made
        P.kill("paysim")
        P.launch("paysim", {"PAYSIM_WEBHOOK_URL": ""})
        try:
            wait_for(paysim_up, 10, "sb-paysim up")
            st, _, _ = P.provider("POST", "/v1/admin/modes", {"card_number": SLOW_CARD, "delay_ms": 2500})
            self.assertEqual(st, 200)
            r, tok = self.hold(sid, ["VIP-A-2"])
            rid = r["reservationId"]
            pay = self.pay(r, tok, card=SLOW_CARD)
            self.assertEqual(pay["status"], "APPROVED", pay)
            wait_for(lambda: "reservation.payment_refused" in types(rid), 30, "the late approval refused")
            ref = event(rid, "reservation.payment_refused")
            self.assertEqual((text(ref, 2), text(ref, 5)), (pay["paymentId"], "EXPIRED"))
            wait_for(lambda: self.payment_of(rid, tok)["status"] == "REFUNDED", 30, "the late payment refunded")
            charge = P.provider("GET", f"/v1/charges/{self.payment_of(rid, tok)['providerRef']}")[1]
            self.assertEqual((charge["amount"], charge["amount_refunded"]), (150000, 150000), charge)
        finally:
            P.kill("paysim")
            P.launch("paysim")
            wait_for(paysim_up, 10, "sb-paysim up")
        self.assertEqual(self.get(rid, tok)["status"], "EXPIRED")
        self.assertNotIn("reservation.confirmed", types(rid))
        self.assertEqual(seats_of(sid, rid), {})

    def approvals_racing_expiry(self):
        n = 60
        _, (sid,) = self.show(grades=[{"grade": "S", "price": 1000, "seatCount": 80}])
        seats = [f"S-{chr(65 + i // 20)}-{i % 20 + 1}" for i in range(n)]
        with cf.ThreadPoolExecutor(8) as ex:
            held = list(ex.map(lambda s: self.hold(sid, [s])[0], seats))
        rivals = [mint(P)[1] for _ in range(n)]

        def approve(r):
            # around the deadline, most before it: under load a delivery takes a few hundred ms,
            # and both outcomes must occur (a window of +-0.15 s once confirmed none)
            time.sleep(max(0.0, rfc3339(r["expiresAt"]) + random.uniform(-1.0, 0.3) - time.time()))
            return deliver(P, ADMIN, "reservation", "payment.approved", r["reservationId"], approval(r))[0]

        def rival(i):
            time.sleep(max(0.0, rfc3339(held[i]["expiresAt"]) + random.uniform(0, 0.1) - time.time()))
            return P.call("POST", "/reservations", {"scheduleId": sid, "seatIds": [seats[i]]},
                          token=rivals[i])[0]

        with cf.ThreadPoolExecutor(2 * n) as ex:
            approvals = [ex.submit(approve, r) for r in held]
            rival_holds = [ex.submit(rival, i) for i in range(n)]
            self.assertEqual([f.result() for f in approvals], [200] * n)
            rival_codes = [f.result() for f in rival_holds]
        wait_for(lambda: psql(f"SELECT count(*) FROM reservations WHERE schedule_id = '{sid}'"
                              " AND status = 'PENDING_PAYMENT'")[0][0] == "0", 10, "every hold settled")
        confirmed = expired = 0
        for i, r in enumerate(held):
            rid = r["reservationId"]
            g = self.get(rid, ADMIN)
            ts = types(rid)
            seat = seats_of(sid, rid)
            if g["status"] == "CONFIRMED":
                confirmed += 1
                self.assertEqual(seat, {seats[i]: "SOLD"}, rid)
                self.assertEqual((ts.count("reservation.confirmed"), ts.count("reservation.payment_refused")),
                                 (1, 0), ts)
                self.assertEqual(rival_codes[i], 409)
            else:
                expired += 1
                self.assertEqual(g["status"], "EXPIRED", g)
                self.assertEqual(seat, {}, rid)
                self.assertEqual((ts.count("reservation.confirmed"), ts.count("reservation.payment_refused"),
                                  ts.count("reservation.expired")), (0, 1, 1), ts)
        sold = psql(f"SELECT count(*) FROM seats WHERE schedule_id = '{sid}' AND status = 'SOLD'")[0][0]
        self.assertEqual(int(sold), confirmed)
        print(f"\n  approvals racing the deadline: {confirmed} confirmed, {expired} expired and refused,"
              f" {rival_codes.count(201)} rival holds took a seat", file=sys.stderr)
        self.assertGreater(confirmed, 0)
        self.assertGreater(expired, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
