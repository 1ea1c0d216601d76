#!/usr/bin/env python3
"""Booking through the gateway (issue 10): holds of chosen seats and best
available, the per-user limits, Idempotency-Key, view/change/cancel by role,
the member's and the admin's lists, the planner's view, the reservation log,
the events in the outbox, and the race: 300 buyers for 50 seats.

Run by CTest with every real service binary and the real PostgreSQL/Redis/
Kafka; see sbplatform.py. The expiry and crash tests are in
test_booking_faults.py (they need their own settings and process control)."""
import concurrent.futures as cf
import os
import random
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from booking import approved_show, deliver, mint, pb, psql, seat_status, wait_for  # noqa: E402
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, Platform  # noqa: E402

P = None
ADMIN = None


def setUpModule():
    global P, ADMIN
    # the race queues 300 calls on 8 workers: no gateway deadline may cut one
    # (and no Redis wait: 300 new tokens at once, checked against the
    # denylist on a slow build such as the sanitizer run, must not time out)
    P = Platform(env={"GATEWAY_TIMEOUT_MS": "30000", "REDIS_TIMEOUT_MS": "10000"}).__enter__()
    try:
        ADMIN = P.login(ADMIN_LOGIN, ADMIN_PASSWORD)
    except BaseException:
        P.__exit__(None, None, None)
        raise


def tearDownModule():
    P.__exit__(None, None, None)


class Booking(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.planner, cls.pt = P.user("PLANNER")
        cls.at = ADMIN["accessToken"]

    def show(self, **kw):
        return approved_show(P, self.pt["accessToken"], self.at, **kw)

    def hold(self, token, body, headers=None):
        return P.call("POST", "/reservations", body, token=token, headers=headers)

    def assertError(self, resp, status, code, *words):
        st, body, _ = resp
        self.assertEqual(st, status, body)
        self.assertEqual(body["error"]["code"], code, body)
        for w in words:
            self.assertIn(w, body["error"]["message"])

    # ---- holds ----
    def test_hold_chosen_seats_view_and_cancel(self):
        perf, (sid,) = self.show()
        uid, tok = mint(P)
        t0 = time.time()
        st, r, _ = self.hold(tok, {"scheduleId": sid, "seatIds": ["VIP-A-2", "VIP-A-1"],
                                   "attendeeName": "Kim", "attendeePhone": "010-1111-2222"})
        self.assertEqual(st, 201, r)
        self.assertEqual(r["status"], "PENDING_PAYMENT")
        self.assertEqual((r["scheduleId"], r["performanceId"], r["userId"]), (sid, perf["performanceId"], uid))
        self.assertEqual(r["seatIds"], ["VIP-A-1", "VIP-A-2"])
        self.assertEqual(r["amount"], "300000")
        exp = time.mktime(time.strptime(r["expiresAt"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        self.assertTrue(t0 + 590 < exp < time.time() + 610, r["expiresAt"])
        seats = seat_status(P, sid)
        self.assertEqual((seats["VIP-A-1"], seats["VIP-A-2"], seats["VIP-A-3"]), ("HELD", "HELD", "AVAILABLE"))
        rid = r["reservationId"]

        # another buyer: a seat already held -> 409 naming it, nothing of the request held
        other, otok = mint(P)
        self.assertError(self.hold(otok, {"scheduleId": sid, "seatIds": ["VIP-A-3", "VIP-A-2"]}),
                         409, "ALREADY_EXISTS", "VIP-A-2")
        self.assertEqual(seat_status(P, sid)["VIP-A-3"], "AVAILABLE")
        self.assertError(self.hold(otok, {"scheduleId": sid, "seatIds": ["VIP-Z-9"]}), 400, "INVALID_ARGUMENT",
                         "VIP-Z-9")

        # view: owner and admin; another user and anonymous not
        st, g, _ = P.call("GET", f"/reservations/{rid}", token=tok)
        self.assertEqual(st, 200, g)
        self.assertEqual((g["attendeeName"], g["version"]), ("Kim", "1"))
        self.assertEqual([(e.get("fromStatus", ""), e["toStatus"], e["actor"]) for e in g["log"]],
                         [("", "PENDING_PAYMENT", uid)])
        self.assertEqual(P.call("GET", f"/reservations/{rid}", token=self.at)[0], 200)
        self.assertError(P.call("GET", f"/reservations/{rid}", token=otok), 404, "NOT_FOUND")
        self.assertEqual(P.call("GET", f"/reservations/{rid}")[0], 401)
        self.assertError(P.call("GET", f"/reservations/{rid}", token=self.pt["accessToken"]), 404, "NOT_FOUND")
        self.assertError(P.call("GET", "/reservations/not-a-uuid", token=tok), 400, "INVALID_ARGUMENT")
        self.assertError(P.call("GET", f"/reservations/{uuid.uuid4()}", token=tok), 404, "NOT_FOUND")

        # cancel: not by another user; by the owner; again -> the same state
        self.assertError(P.call("DELETE", f"/reservations/{rid}", token=otok), 404, "NOT_FOUND")
        st, c, _ = P.call("DELETE", f"/reservations/{rid}", token=tok)
        self.assertEqual(st, 200, c)
        self.assertEqual(c["status"], "CANCELLED")
        seats = seat_status(P, sid)
        self.assertEqual((seats["VIP-A-1"], seats["VIP-A-2"]), ("AVAILABLE", "AVAILABLE"))
        st, c2, _ = P.call("DELETE", f"/reservations/{rid}", token=tok)
        self.assertEqual((st, c2["status"], c2["version"]), (200, "CANCELLED", c["version"]))
        g = P.call("GET", f"/reservations/{rid}", token=tok)[1]
        self.assertEqual([(e.get("fromStatus", ""), e["toStatus"]) for e in g["log"]],
                         [("", "PENDING_PAYMENT"), ("PENDING_PAYMENT", "CANCELLED")])
        self.assertEqual(g["log"][1]["actor"], uid)
        # the freed seats can be held again
        self.assertEqual(self.hold(otok, {"scheduleId": sid, "seatIds": ["VIP-A-1"]})[0], 201)
        # events: created and cancelled in the outbox, with the snapshot
        rows = psql(f"SELECT type FROM sb_outbox WHERE aggregate_id = '{rid}' ORDER BY id")
        self.assertEqual([r[0] for r in rows], ["reservation.created", "reservation.cancelled"])
        # the cancellation events can be published again (admin only) once published
        wait_for(lambda: psql(f"SELECT count(*) FROM sb_outbox WHERE aggregate_id = '{rid}'"
                              " AND type = 'reservation.cancelled' AND published_at IS NOT NULL") == [["1"]],
                 30, "reservation.cancelled published")
        self.assertEqual(P.call("POST", "/events/cancellations", {"aggregateId": rid}, token=tok)[0], 403)
        # a filter is required: an empty body replays nothing
        st, rep, _ = P.call("POST", "/events/cancellations", {"reason": "republish"}, token=self.at)
        self.assertEqual((st, rep["error"]["code"]), (400, "INVALID_ARGUMENT"), rep)
        st, rep, _ = P.call("POST", "/events/cancellations", {"aggregateId": rid, "reason": "republish"},
                            token=self.at)
        self.assertEqual(st, 200, rep)
        self.assertEqual(int(rep["republished"]), 1, rep)
        cancelled = psql(f"SELECT event_id FROM sb_outbox WHERE aggregate_id = '{rid}' AND type = 'reservation.cancelled'")
        self.assertEqual(rep["eventIds"], [cancelled[0][0]])

    def test_best_available(self):
        _, (sid,) = self.show(grades=[{"grade": "S", "price": 50000, "seatCount": 25}])
        _, t1 = mint(P)
        st, r, _ = self.hold(t1, {"scheduleId": sid, "grade": "S", "quantity": 3})
        self.assertEqual(st, 201, r)
        self.assertEqual(r["seatIds"], ["S-A-1", "S-A-2", "S-A-3"])
        self.assertEqual(r["amount"], "150000")
        # row A has 17 left (4..20); 18 adjacent exist nowhere... ask for 4: A-4..A-7
        _, t2 = mint(P)
        st, r, _ = self.hold(t2, {"scheduleId": sid, "grade": "S", "quantity": 4})
        self.assertEqual(r["seatIds"], ["S-A-4", "S-A-5", "S-A-6", "S-A-7"])
        self.assertError(self.hold(t2, {"scheduleId": sid, "grade": "VIP", "quantity": 1}), 400,
                         "FAILED_PRECONDITION")  # t2 already has a pending one here
        _, t3 = mint(P)
        self.assertError(self.hold(t3, {"scheduleId": sid, "grade": "VIP", "quantity": 1}), 404, "NOT_FOUND")
        self.assertError(self.hold(t3, {"scheduleId": sid, "grade": "S", "quantity": 9}), 400, "INVALID_ARGUMENT")
        # sold out: 25 - 7 = 18 left; two buyers of 8 take 16, the next asks 3 of 2
        for _ in range(2):
            self.assertEqual(self.hold(mint(P)[1], {"scheduleId": sid, "grade": "S", "quantity": 8})[0], 201)
        self.assertError(self.hold(t3, {"scheduleId": sid, "grade": "S", "quantity": 3}), 409, "ALREADY_EXISTS",
                         "2 seat(s) free")
        self.assertEqual(self.hold(t3, {"scheduleId": sid, "grade": "S", "quantity": 2})[0], 201)
        self.assertEqual(set(seat_status(P, sid).values()), {"HELD"})

    def test_bad_requests_and_roles(self):
        _, (sid,) = self.show()
        _, tok = mint(P)
        cases = [
            ({"scheduleId": "x", "seatIds": ["VIP-A-1"]}, "scheduleId"),
            ({"scheduleId": sid}, "seatIds"),
            ({"scheduleId": sid, "seatIds": ["VIP-A-1"], "grade": "VIP", "quantity": 1}, "either"),
            ({"scheduleId": sid, "seatIds": ["VIP-A-1", "VIP-A-1"]}, "twice"),
            ({"scheduleId": sid, "seatIds": [f"R-A-{i}" for i in range(1, 10)]}, "seatIds"),
            ({"scheduleId": sid, "grade": "VIP", "quantity": 0}, "quantity"),
            ({"scheduleId": sid, "seatIds": ["VIP-A-1"], "attendeeName": "x" * 101}, "attendeeName"),
        ]
        for body, word in cases:
            with self.subTest(body=body):
                self.assertError(self.hold(tok, body), 400, "INVALID_ARGUMENT", word)
        self.assertError(self.hold(tok, {"scheduleId": str(uuid.uuid4()), "seatIds": ["VIP-A-1"]}), 404,
                         "NOT_FOUND")
        self.assertEqual(self.hold(None, {"scheduleId": sid, "seatIds": ["VIP-A-1"]})[0], 401)
        self.assertEqual(self.hold(self.pt["accessToken"], {"scheduleId": sid, "seatIds": ["VIP-A-1"]})[0], 403)
        self.assertEqual(self.hold(self.at, {"scheduleId": sid, "seatIds": ["VIP-A-1"]})[0], 403)
        self.assertEqual(set(seat_status(P, sid).values()), {"AVAILABLE"})

    def test_cancelled_performance_is_not_bookable(self):
        perf, (sid,) = self.show()
        st, b, _ = P.call("POST", f"/performances/{perf['performanceId']}/cancel", {"reason": "storm"},
                          token=self.pt["accessToken"])
        self.assertEqual(st, 200, b)
        _, tok = mint(P)
        deadline = time.time() + 20
        while time.time() < deadline:
            st, b, _ = self.hold(tok, {"scheduleId": sid, "seatIds": ["VIP-A-1"]})
            if st != 201:
                break
            P.call("DELETE", f"/reservations/{b['reservationId']}", token=tok)  # the event was not there yet
            time.sleep(0.1)
        self.assertError((st, b, None), 400, "FAILED_PRECONDITION", "cannot be booked")

    def test_limits_per_member_and_schedule(self):
        _, (s1, s2) = self.show(schedules=2)
        _, tok = mint(P)
        st, r, _ = self.hold(tok, {"scheduleId": s1, "seatIds": ["R-A-1", "R-A-2"]})
        self.assertEqual(st, 201, r)
        # one pending reservation per schedule
        self.assertError(self.hold(tok, {"scheduleId": s1, "seatIds": ["R-A-3"]}), 400, "FAILED_PRECONDITION",
                         "awaiting payment")
        # another schedule is another limit
        self.assertEqual(self.hold(tok, {"scheduleId": s2, "seatIds": ["R-A-3"]})[0], 201)
        # 8 seats per member and schedule, counting the ones held: a change to 9 is refused
        self.assertError(P.call("PUT", f"/reservations/{r['reservationId']}",
                                {"seatIds": [f"R-B-{i}" for i in range(1, 10)]}, token=tok), 400,
                         "INVALID_ARGUMENT")
        st, u, _ = P.call("PUT", f"/reservations/{r['reservationId']}",
                          {"seatIds": [f"R-B-{i}" for i in range(1, 9)]}, token=tok)
        self.assertEqual(st, 200, u)
        self.assertEqual(len(u["seatIds"]), 8)

    def test_idempotency_key(self):
        _, (sid,) = self.show()
        _, tok = mint(P)
        key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
        body = {"scheduleId": sid, "seatIds": ["R-B-11"]}
        st1, r1, _ = self.hold(tok, body, key)
        st2, r2, _ = self.hold(tok, body, key)
        self.assertEqual((st1, st2), (201, 201), (r1, r2))
        self.assertEqual(r1["reservationId"], r2["reservationId"])
        self.assertError(self.hold(tok, {"scheduleId": sid, "seatIds": ["R-B-12"]}, key), 409, "ALREADY_EXISTS")
        # the key is the user's own: another user's same key is another request
        _, tok2 = mint(P)
        st, r3, _ = self.hold(tok2, {"scheduleId": sid, "seatIds": ["R-B-13"]}, key)
        self.assertEqual(st, 201, r3)
        self.assertNotEqual(r3["reservationId"], r1["reservationId"])
        # a refusal is replayed too, even after the seat became free
        _, tok3 = mint(P)
        self.assertError(self.hold(tok3, {"scheduleId": sid, "seatIds": ["R-B-11"]}, {"Idempotency-Key": "k2"}),
                         409, "ALREADY_EXISTS", "R-B-11")
        P.call("DELETE", f"/reservations/{r1['reservationId']}", token=tok)
        self.assertError(self.hold(tok3, {"scheduleId": sid, "seatIds": ["R-B-11"]}, {"Idempotency-Key": "k2"}),
                         409, "ALREADY_EXISTS", "R-B-11")

    # ---- change ----
    def test_change_seats_and_attendee(self):
        _, (sid,) = self.show()
        uid, tok = mint(P)
        rid = self.hold(tok, {"scheduleId": sid, "seatIds": ["R-A-1", "R-A-2"]})[1]["reservationId"]
        other, otok = mint(P)
        self.assertEqual(self.hold(otok, {"scheduleId": sid, "seatIds": ["R-A-5"]})[0], 201)
        # conflict: R-A-5 is taken -> nothing changes, R-A-3 not held
        self.assertError(P.call("PUT", f"/reservations/{rid}", {"seatIds": ["R-A-2", "R-A-3", "R-A-5"]}, token=tok),
                         409, "ALREADY_EXISTS", "R-A-5")
        seats = seat_status(P, sid)
        self.assertEqual([seats[s] for s in ("R-A-1", "R-A-2", "R-A-3")], ["HELD", "HELD", "AVAILABLE"])
        # another user cannot change it
        self.assertError(P.call("PUT", f"/reservations/{rid}", {"attendeeName": "Eve"}, token=otok), 404,
                         "NOT_FOUND")
        self.assertError(P.call("PUT", f"/reservations/{rid}", {}, token=tok), 400, "INVALID_ARGUMENT")
        st, u, _ = P.call("PUT", f"/reservations/{rid}", {"seatIds": ["R-A-2", "R-A-3", "R-A-4"]}, token=tok)
        self.assertEqual(st, 200, u)
        self.assertEqual((u["seatIds"], u["amount"], u["version"]), (["R-A-2", "R-A-3", "R-A-4"], "270000", "2"))
        seats = seat_status(P, sid)
        self.assertEqual([seats[s] for s in ("R-A-1", "R-A-2", "R-A-3", "R-A-4")],
                         ["AVAILABLE", "HELD", "HELD", "HELD"])
        # the admin may change the attendee (saying why: the admin audit log)
        st, u, _ = P.call("PUT", f"/reservations/{rid}", {"attendeeName": "Lee", "attendeePhone": "010-3",
                                                         "reason": "member called"}, token=self.at)
        self.assertEqual((st, u["attendeeName"], u["attendeePhone"], u["seatIds"]),
                         (200, "Lee", "010-3", ["R-A-2", "R-A-3", "R-A-4"]))
        g = P.call("GET", f"/reservations/{rid}", token=tok)[1]
        self.assertEqual([e["reason"] for e in g["log"]][1:], ["seats changed", "attendee changed by an admin: member called"])
        self.assertEqual(g["log"][2]["actor"], ADMIN["userId"])
        rows = psql(f"SELECT type FROM sb_outbox WHERE aggregate_id = '{rid}' ORDER BY id")
        self.assertEqual([r[0] for r in rows], ["reservation.created", "reservation.changed", "reservation.changed"])
        # the admin cancels it; then nothing may change
        st, c, _ = P.call("DELETE", f"/reservations/{rid}?reason=duplicate%20booking", token=self.at)
        self.assertEqual((st, c["status"]), (200, "CANCELLED"))
        self.assertEqual(psql(f"SELECT actor, reason FROM reservation_log WHERE reservation_id = '{rid}'"
                              " ORDER BY id DESC LIMIT 1"), [[ADMIN["userId"], "duplicate booking"]])
        self.assertError(P.call("PUT", f"/reservations/{rid}", {"attendeeName": "Kim"}, token=tok), 400,
                         "FAILED_PRECONDITION")

    def test_paid_reservation_changes_attendee_only(self):
        _, (sid,) = self.show()
        _, tok = mint(P)
        r = self.hold(tok, {"scheduleId": sid, "seatIds": ["VIP-A-5"]})[1]
        rid = r["reservationId"]
        # paid: the payment service's payment.approved (test_saga.py covers the saga)
        st, body, _ = deliver(P, self.at, "reservation", "payment.approved", rid,
                              pb((1, str(uuid.uuid4())), (2, rid), (3, r["userId"]), (4, int(r["amount"]))))
        self.assertEqual(st, 200, body)
        self.assertEqual(P.call("GET", f"/reservations/{rid}", token=tok)[1]["status"], "CONFIRMED")
        self.assertEqual(seat_status(P, sid)["VIP-A-5"], "SOLD")
        # the attendee of a paid one may still change; its seats not
        self.assertEqual(P.call("PUT", f"/reservations/{rid}", {"attendeeName": "Park"}, token=tok)[0], 200)
        self.assertError(P.call("PUT", f"/reservations/{rid}", {"seatIds": ["VIP-A-6"]}, token=tok), 400,
                         "FAILED_PRECONDITION")
        self.assertEqual(seat_status(P, sid)["VIP-A-5"], "SOLD")

    # ---- lists ----
    def test_member_admin_and_planner_lists(self):
        perf, (sid,) = self.show()
        pid = perf["performanceId"]
        uid, tok = mint(P)
        _, (sid2,) = self.show()
        ids = []
        for s, seat in ((sid, "R-B-19"), (sid2, "R-B-20")):
            ids.append(self.hold(tok, {"scheduleId": s, "seatIds": [seat]})[1]["reservationId"])
        P.call("DELETE", f"/reservations/{ids[0]}", token=tok)
        # the member's own, newest first, one per page
        seen, token = [], ""
        for _ in range(5):
            st, b, _ = P.call("GET", f"/members/{uid}/reservations?pageSize=1&pageToken={token}", token=tok)
            self.assertEqual(st, 200, b)
            seen += [r["reservationId"] for r in b.get("reservations", [])]
            token = b.get("nextPageToken", "")
            if not token:
                break
        self.assertEqual(seen, ids[::-1])
        st, b, _ = P.call("GET", f"/members/{uid}/reservations?status=CANCELLED", token=tok)
        self.assertEqual([r["reservationId"] for r in b["reservations"]], [ids[0]])
        other, otok = mint(P)
        self.assertEqual(P.call("GET", f"/members/{uid}/reservations", token=otok)[0], 403)
        self.assertEqual(P.call("GET", f"/members/{uid}/reservations", token=self.at)[0], 200)
        self.assertError(P.call("GET", f"/members/{uid}/reservations?pageToken=garbage", token=tok), 400,
                         "INVALID_ARGUMENT")
        # admin: everything, with filters
        self.assertEqual(P.call("GET", "/admin/reservations", token=tok)[0], 403)
        st, b, _ = P.call("GET", f"/admin/reservations?performanceId={pid}", token=self.at)
        self.assertEqual([r["reservationId"] for r in b["reservations"]], [ids[0]])
        st, b, _ = P.call("GET", f"/admin/reservations?userId={uid}&status=PENDING_PAYMENT", token=self.at)
        self.assertEqual([r["reservationId"] for r in b["reservations"]], [ids[1]])
        st, b, _ = P.call("GET", f"/admin/reservations?scheduleId={sid2}&from=2000-01-01T00:00:00Z", token=self.at)
        self.assertEqual([r["reservationId"] for r in b["reservations"]], [ids[1]])
        st, b, _ = P.call("GET", f"/admin/reservations?userId={uid}&to=2000-01-01T00:00:00Z", token=self.at)
        self.assertEqual(b.get("reservations", []), [])
        self.assertError(P.call("GET", "/admin/reservations?from=yesterday", token=self.at), 400,
                         "INVALID_ARGUMENT")
        # the planner's view lists the performance's reservations beside the counts
        st, v, _ = P.call("GET", f"/performances/{pid}/reservations", token=self.pt["accessToken"])
        self.assertEqual(st, 200, v)
        self.assertEqual([r["reservationId"] for r in v["reservations"]], [ids[0]])
        self.assertEqual(P.call("GET", f"/performances/{pid}/reservations", token=self.at)[0], 200)
        other_planner, opt = P.user("PLANNER")
        self.assertEqual(P.call("GET", f"/performances/{pid}/reservations", token=opt["accessToken"])[0], 403)

    # ---- the race ----
    def test_300_buyers_race_for_50_seats(self):
        """300 buyers at once through the gateway for 50 seats, half naming
        seats, half best available: no seat held twice, the seat map agrees
        with the winners, every loser got 409 and nothing else."""
        _, (sid,) = self.show(grades=[{"grade": "R", "price": 10000, "seatCount": 50}])
        all_seats = [f"R-{row}-{n}" for row in "AB" for n in range(1, 21)] + [f"R-C-{n}" for n in range(1, 11)]
        rng = random.Random(10)
        buyers = []
        for i in range(300):
            _, tok = mint(P)
            if i % 2:
                start = rng.randrange(0, 49)
                body = {"scheduleId": sid, "seatIds": all_seats[start:start + rng.choice((1, 2))]}
            else:
                body = {"scheduleId": sid, "grade": "R", "quantity": rng.choice((1, 2))}
            buyers.append((tok, body))
        go = threading.Event()

        def buy(b):
            go.wait()
            return self.hold(b[0], b[1])

        with cf.ThreadPoolExecutor(max_workers=150) as ex:
            futures = [ex.submit(buy, b) for b in buyers]
            time.sleep(0.5)
            go.set()
            results = [f.result() for f in futures]
        won = [body for st, body, _ in results if st == 201]
        lost = [(st, body) for st, body, _ in results if st != 201]
        self.assertTrue(all(st == 409 and body["error"]["code"] == "ALREADY_EXISTS" for st, body in lost),
                        [x for x in lost if x[0] != 409][:5])
        held = [s for r in won for s in r["seatIds"]]
        self.assertEqual(len(held), len(set(held)), "a seat held twice")
        m = seat_status(P, sid)
        self.assertEqual({s for s, v in m.items() if v == "HELD"}, set(held))
        self.assertGreater(len(held), 40)  # demand is 450 seats for 50: nearly all go
        db = psql(f"SELECT count(*), count(DISTINCT seat_id) FROM (SELECT unnest(seat_ids) AS seat_id"
                  f" FROM reservations WHERE schedule_id = '{sid}' AND status = 'PENDING_PAYMENT') x")
        self.assertEqual(db, [[str(len(held)), str(len(held))]])
        print(f"race: {len(won)} winners holding {len(held)} seats, {len(lost)} losers (409)", file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
