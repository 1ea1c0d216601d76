#!/usr/bin/env python3
"""Admin oversight (issue 12): every change an admin makes to someone else's
data needs a reason (400 without one, nothing changed) and leaves a row in
the platform's audit log, GET /admin/audit (the auth service keeps it, fed by
the audit.admin_action events each service writes in the change's
transaction). Owners acting on their own things need no reason and leave no
row. The log's filters and pages, who may read it, and a redelivered audit
event stored once. The admin-visible state logs: a reservation's and a
payment's log in their GET answers, with the admin and the reason.

Run by CTest with every real service binary and the real PostgreSQL/Redis/
Kafka and the provider simulator (sbplatform.py)."""
import datetime as dt
import os
import secrets
import sys
import unittest
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from booking import approved_show, deliver, future, mint, pb, psql, wait_for  # noqa: E402
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, Platform  # noqa: E402

OK_CARD = "4242424242424242"
P = None
ADMIN = None


def setUpModule():
    global P, ADMIN
    P = Platform(env={"GATEWAY_TIMEOUT_MS": "15000"}).__enter__()
    try:
        ADMIN = P.login(ADMIN_LOGIN, ADMIN_PASSWORD)
    except BaseException:
        P.__exit__(None, None, None)
        raise


def tearDownModule():
    P.__exit__(None, None, None)


def q(**params):
    return "?" + urllib.parse.urlencode(params)


class AdminAudit(unittest.TestCase):
    next_seat = 0

    @classmethod
    def setUpClass(cls):
        cls.planner, cls.pt = P.user("PLANNER")
        cls.at = ADMIN["accessToken"]
        cls.admin_id = ADMIN["userId"]
        cls.perf, (cls.sid,) = approved_show(P, cls.pt["accessToken"], cls.at,
                                             grades=[{"grade": "R", "price": 50000, "seatCount": 60}])

    def assertError(self, resp, status, code, *words):
        st, body, _ = resp
        self.assertEqual(st, status, body)
        self.assertEqual(body["error"]["code"], code, body)
        for w in words:
            self.assertIn(w, body["error"]["message"])

    def no_reason(self, resp):
        self.assertError(resp, 400, "INVALID_ARGUMENT", "reason")

    def audit(self, **params):
        st, body, _ = P.call("GET", "/admin/audit" + q(**params), token=self.at)
        self.assertEqual(st, 200, body)
        return body

    def audited(self, target_id, n=1):
        """The audit rows of target_id once there are n (they come over Kafka)."""
        rows = []

        def enough():
            rows[:] = self.audit(targetId=target_id).get("entries", [])
            return len(rows) >= n
        wait_for(enough, 30, f"{n} audit rows of {target_id}")
        return rows

    def assertRow(self, row, service, action, target_type, target_id, reason):
        self.assertEqual((row["adminId"], row["service"], row["action"], row["targetType"],
                          row["targetId"], row["reason"]),
                         (self.admin_id, service, action, target_type, target_id, reason), row)
        self.assertTrue(row["occurredAt"].endswith("Z"), row)
        uuid.UUID(row["eventId"])

    def audit_events_written(self, service):
        return int(psql("SELECT count(*) FROM sb_outbox WHERE type = 'audit.admin_action'", service)[0][0])

    def reservation(self):
        """A fresh member's PENDING_PAYMENT reservation of one seat: (token, reservation)."""
        seat = f"R-{chr(ord('A') + AdminAudit.next_seat // 20)}-{AdminAudit.next_seat % 20 + 1}"
        AdminAudit.next_seat += 1
        uid, tok = mint(P)
        st, r, _ = P.call("POST", "/reservations", {"scheduleId": self.sid, "seatIds": [seat]}, token=tok)
        self.assertEqual(st, 201, r)
        return tok, r

    def get_reservation(self, rid):
        st, r, _ = P.call("GET", f"/reservations/{rid}", token=self.at)
        self.assertEqual(st, 200, r)
        return r

    # ---- reservations ----
    def test_admin_changes_and_cancels_a_reservation_with_a_reason(self):
        tok, r = self.reservation()
        rid = r["reservationId"]
        url = f"/reservations/{rid}"
        for bad in ({}, {"reason": ""}, {"reason": " \t "}, {"reason": "x" * 501}, {"reason": "a\x01b"}):
            self.no_reason(P.call("PUT", url, dict({"attendeeName": "Lee"}, **bad), token=self.at))
        self.assertEqual(self.get_reservation(rid).get("attendeeName", ""), "")
        st, u, _ = P.call("PUT", url, {"attendeeName": "Lee", "reason": "member called the desk"},
                          token=self.at)
        self.assertEqual((st, u["attendeeName"]), (200, "Lee"), u)
        for bad in ("", "?reason=", "?reason=%20%20"):
            self.no_reason(P.call("DELETE", url + bad, token=self.at))
        self.assertEqual(self.get_reservation(rid)["status"], "PENDING_PAYMENT")
        st, c, _ = P.call("DELETE", url + q(reason="double booking"), token=self.at)
        self.assertEqual((st, c["status"]), (200, "CANCELLED"), c)
        rows = self.audited(rid, 2)
        self.assertEqual(len(rows), 2, rows)
        # newest first
        self.assertRow(rows[0], "reservation", "CancelReservation", "reservation", rid, "double booking")
        self.assertEqual((rows[0]["before"], rows[0]["after"]), ("PENDING_PAYMENT", "CANCELLED"))
        self.assertRow(rows[1], "reservation", "UpdateReservation", "reservation", rid,
                       "member called the desk")
        self.assertGreaterEqual(rows[0]["occurredAt"], rows[1]["occurredAt"])
        # the reservation's own log, as an admin reads it: who, from, to, why
        log = self.get_reservation(rid)["log"]
        self.assertEqual((log[-1]["actor"], log[-1]["toStatus"], log[-1]["reason"]),
                         (self.admin_id, "CANCELLED", "double booking"), log)
        self.assertEqual(log[-2]["reason"], "attendee changed by an admin: member called the desk", log)

    def test_owner_acting_on_own_reservation_needs_no_reason_and_is_not_audited(self):
        before = self.audit_events_written("reservation")
        tok, r = self.reservation()
        rid = r["reservationId"]
        st, u, _ = P.call("PUT", f"/reservations/{rid}", {"attendeeName": "Kim"}, token=tok)
        self.assertEqual(st, 200, u)
        st, c, _ = P.call("DELETE", f"/reservations/{rid}", token=tok)
        self.assertEqual((st, c["status"]), (200, "CANCELLED"), c)
        self.assertEqual(self.audit_events_written("reservation"), before)
        self.assertEqual(self.audit(targetId=rid).get("entries", []), [])

    # ---- payments ----
    def test_admin_corrects_and_refunds_a_payment_with_a_reason(self):
        tok, r = self.reservation()
        st, p, _ = P.call("POST", "/payments", {"reservationId": r["reservationId"], "amount": r["amount"],
                                                "method": "CARD", "cardNumber": OK_CARD},
                          token=tok, headers={"Idempotency-Key": f"k-{uuid.uuid4()}"})
        self.assertEqual((st, p["status"]), (201, "APPROVED"), p)
        pid = p["paymentId"]
        url = f"/payments/{pid}"
        self.no_reason(P.call("PUT", url, {"providerRef": p["providerRef"], "reason": "   "}, token=self.at))
        st, c, _ = P.call("PUT", url, {"providerRef": p["providerRef"], "reason": "reference checked"},
                          token=self.at)
        self.assertEqual(st, 200, c)
        for bad in ("", "?reason=", "?reason=" + "y" * 501):
            self.no_reason(P.call("DELETE", url + bad, token=self.at))
        st, g, _ = P.call("GET", url, token=self.at)
        self.assertEqual((st, g["status"]), (200, "APPROVED"), g)
        st, c, _ = P.call("DELETE", url + q(reason="fraud suspected"), token=self.at)
        self.assertEqual((st, c["status"]), (200, "REFUNDED"), c)
        rows = self.audited(pid, 2)
        self.assertRow(rows[0], "payment", "CancelPayment", "payment", pid, "fraud suspected")
        self.assertEqual((rows[0]["before"], rows[0]["after"]), ("APPROVED", "REFUND_REQUESTED"))
        self.assertRow(rows[1], "payment", "UpdatePayment", "payment", pid, "reference checked")
        # the payment's log through the API: who, when, from, to, why
        st, g, _ = P.call("GET", url, token=self.at)
        self.assertEqual(st, 200, g)
        log = g["log"]
        self.assertEqual((log[0].get("fromStatus", ""), log[-1]["toStatus"]), ("", "REFUNDED"), log)
        # who asked for the refund and why is a line of its own: the refund is
        # then confirmed by the provider's answer (the admin's call) or by its
        # charge.refunded webhook, whichever lands first, and only once
        self.assertIn(("APPROVED", "APPROVED", self.admin_id, "refund requested: fraud suspected"),
                      [(e.get("fromStatus", ""), e["toStatus"], e["actor"], e["reason"]) for e in log], log)
        self.assertEqual([e["toStatus"] for e in log].count("REFUNDED"), 1, log)
        self.assertIn(log[-1]["actor"], (self.admin_id, "provider"), log)
        self.assertTrue(all(e["at"].endswith("Z") for e in log), log)
        # the owner sees the same log; the list does not carry it
        st, mine, _ = P.call("GET", url, token=tok)
        self.assertEqual((st, len(mine["log"])), (200, len(log)), mine)
        st, lst, _ = P.call("GET", "/payments", token=tok)
        self.assertEqual(lst["payments"][0]["log"], [])

    # ---- explicit notices ----
    def test_admin_notice_needs_a_reason(self):
        tok, r = self.reservation()
        rid = r["reservationId"]
        body = {"reservationId": rid, "title": "Door time", "message": "Doors open at 18:30."}
        # the notification service learns of the reservation from its event
        wait_for(lambda: P.call("POST", "/notifications/reservations", body, token=self.at)[0] == 400, 30,
                 "the notification service knows the reservation")
        self.no_reason(P.call("POST", "/notifications/reservations", dict(body, reason=" "), token=self.at))
        self.assertEqual(self.door_notices(tok), 0)
        st, sent, _ = P.call("POST", "/notifications/reservations", dict(body, reason="door time moved"),
                             token=self.at)
        self.assertEqual((st, sent["sent"]), (200, 1), sent)
        row, = self.audited(rid)
        self.assertRow(row, "notification", "SendReservationNotice", "reservation", rid, "door time moved")
        self.assertEqual(row["after"], "1 notified")
        self.assertEqual(self.door_notices(tok), 1)

    def door_notices(self, tok):
        st, inbox, _ = P.call("GET", "/notifications", token=tok)
        self.assertEqual(st, 200, inbox)
        return sum("Door time" in n["title"] for n in inbox.get("notifications", []))

    # ---- members ----
    def test_admin_withdraws_a_member_with_a_reason(self):
        m, t = P.user()
        url = f"/members/{m['userId']}"
        self.no_reason(P.call("DELETE", url, token=self.at))
        self.no_reason(P.call("DELETE", url + "?reason=%0A", token=self.at))
        st, g, _ = P.call("GET", url, token=self.at)
        self.assertEqual((st, g["loginId"]), (200, m["loginId"]), g)
        st, d, _ = P.call("DELETE", url + q(reason="spam account"), token=self.at)
        self.assertEqual((st, d["status"]), (200, "WITHDRAWN"), d)
        row, = self.audited(m["userId"])
        self.assertRow(row, "member", "DeleteMember", "member", m["userId"], "spam account")
        # a member withdrawing themself needs no reason and leaves no row
        before = self.audit_events_written("member")
        m2, t2 = P.user()
        st, d, _ = P.call("DELETE", f"/members/{m2['userId']}", token=t2["accessToken"])
        self.assertEqual(st, 200, d)
        self.assertEqual(self.audit_events_written("member"), before)

    # ---- performances ----
    def new_performance(self):
        body = {"title": f"Audit {secrets.token_hex(3)}", "description": "e2e", "venue": "Hall A",
                "category": "PLAY", "runningMinutes": 90, "schedules": [{"startsAt": future(30)}],
                "grades": [{"grade": "R", "price": 10000, "seatCount": 5}]}
        st, p, _ = P.call("POST", "/performances", body, token=self.pt["accessToken"])
        self.assertEqual(st, 201, p)
        return p["performanceId"]

    def status_of(self, pid):
        st, p, _ = P.call("GET", f"/performances/{pid}", token=self.at)
        self.assertEqual(st, 200, p)
        return p["status"]

    def test_admin_approves_rejects_and_cancels_performances_with_a_reason(self):
        a, b, c = self.new_performance(), self.new_performance(), self.new_performance()
        self.no_reason(P.call("POST", f"/performances/{a}/approve", {}, token=self.at))
        self.no_reason(P.call("POST", f"/performances/{a}/approve", {"reason": "  "}, token=self.at))
        self.no_reason(P.call("POST", f"/performances/{b}/reject", {}, token=self.at))
        self.assertEqual((self.status_of(a), self.status_of(b)), ("PENDING_APPROVAL", "PENDING_APPROVAL"))
        st, x, _ = P.call("POST", f"/performances/{a}/approve", {"reason": "venue contract seen"},
                          token=self.at)
        self.assertEqual((st, x["status"]), (200, "APPROVED"), x)
        st, x, _ = P.call("POST", f"/performances/{b}/reject", {"reason": "no seat plan"}, token=self.at)
        self.assertEqual((st, x["status"]), (200, "REJECTED"), x)
        self.no_reason(P.call("POST", f"/performances/{a}/cancel", {}, token=self.at))
        self.assertEqual(self.status_of(a), "APPROVED")
        st, x, _ = P.call("POST", f"/performances/{a}/cancel", {"reason": "planner unreachable"},
                          token=self.at)
        self.assertEqual((st, x["status"]), (200, "CANCELLED"), x)
        rows = self.audited(a, 2)
        self.assertRow(rows[0], "performance", "CancelPerformance", "performance", a, "planner unreachable")
        self.assertEqual((rows[0]["before"], rows[0]["after"]), ("APPROVED", "CANCELLED"))
        self.assertRow(rows[1], "performance", "ApprovePerformance", "performance", a, "venue contract seen")
        row, = self.audited(b)
        self.assertRow(row, "performance", "RejectPerformance", "performance", b, "no seat plan")
        # the owning planner cancels without a reason and leaves no row
        before = self.audit_events_written("performance")
        st, x, _ = P.call("POST", f"/performances/{c}/cancel", {}, token=self.pt["accessToken"])
        self.assertEqual((st, x["status"]), (200, "CANCELLED"), x)
        self.assertEqual(self.audit_events_written("performance"), before)

    # ---- the log itself ----
    def deliver_audit(self, event_id, service, target, reason, at, action="Tested"):
        payload = pb((1, self.admin_id), (2, service), (3, action), (4, "thing"), (5, target), (6, reason),
                     (7, "trace-e2e"), (8, at), (9, "A"), (10, "B"))
        return deliver(P, self.at, "auth", "audit.admin_action", self.admin_id, payload, event_id)

    def test_a_redelivered_audit_event_is_stored_once(self):
        target = str(uuid.uuid4())
        eid = str(uuid.uuid4())
        at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        st, body, _ = self.deliver_audit(eid, "e2e", target, "first", at)
        self.assertEqual(st, 200, body)
        self.assertFalse(body.get("duplicate", False), body)
        st, body, _ = self.deliver_audit(eid, "e2e", target, "first", at)
        self.assertEqual((st, body.get("duplicate")), (200, True), body)
        rows = self.audit(targetId=target)["entries"]
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual((rows[0]["eventId"], rows[0]["reason"], rows[0]["traceId"], rows[0]["before"],
                          rows[0]["after"], rows[0]["occurredAt"]), (eid, "first", "trace-e2e", "A", "B", at))
        self.assertEqual(int(psql(f"SELECT count(*) FROM admin_audit WHERE target_id = '{target}'",
                                  "auth")[0][0]), 1)
        # an audit event without a reason is refused (a dead letter), not stored
        st, body, _ = self.deliver_audit(str(uuid.uuid4()), "e2e", target, "", at)
        self.assertEqual(st, 400, body)
        self.assertEqual(len(self.audit(targetId=target)["entries"]), 1)

    def test_filters_and_pages_newest_first(self):
        service = f"e2e{secrets.token_hex(4)}"
        base = dt.datetime(2021, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
        stamps = [(base + dt.timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z") for i in range(5)]
        targets = [str(uuid.uuid4()) for _ in stamps]
        for i, (t, at) in enumerate(zip(targets, stamps)):
            st, body, _ = self.deliver_audit(str(uuid.uuid4()), service, t, f"reason {i}", at,
                                             action="Odd" if i % 2 else "Even")
            self.assertEqual(st, 200, body)
        # pages of 2, newest first, the token carrying the filter's place
        seen, token = [], None
        for _ in range(5):
            params = {"service": service, "pageSize": 2}
            if token:
                params["pageToken"] = token
            page = self.audit(**params)
            seen += [e["targetId"] for e in page["entries"]]
            self.assertLessEqual(len(page["entries"]), 2)
            token = page.get("nextPageToken")
            if not token:
                break
        self.assertEqual(seen, targets[::-1])
        # filters
        self.assertEqual([e["targetId"] for e in self.audit(service=service, action="Odd")["entries"]],
                         [targets[3], targets[1]])
        self.assertEqual([e["targetId"] for e in
                          self.audit(service=service, since=stamps[1], until=stamps[3])["entries"]],
                         [targets[2], targets[1]])
        self.assertEqual([e["targetId"] for e in self.audit(targetId=targets[4].upper())["entries"]],
                         [targets[4]])
        self.assertEqual(self.audit(service=service, adminId=str(uuid.uuid4())).get("entries", []), [])
        self.assertEqual(len(self.audit(service=service, adminId=self.admin_id)["entries"]), 5)
        # bad input
        for bad in ({"pageToken": "nonsense"}, {"since": "yesterday"}, {"pageSize": -1},
                    {"service": "s" * 201}):
            self.assertError(P.call("GET", "/admin/audit" + q(**bad), token=self.at), 400, "INVALID_ARGUMENT")
        self.assertError(P.call("GET", "/admin/audit?nope=1", token=self.at), 400, "INVALID_ARGUMENT")

    # ---- operations: event replays and deliveries ----
    def test_replays_and_deliveries_need_a_reason_and_are_audited(self):
        tok, r = self.reservation()
        rid = r["reservationId"]
        wait_for(lambda: psql(f"SELECT count(*) FROM sb_outbox WHERE aggregate_id = '{rid}'"
                              " AND published_at IS NOT NULL") == [["1"]], 30, "reservation.created published")
        before = self.audit_events_written("reservation")
        # a replay: no reason, nothing marked and nothing recorded
        for bad in ({"aggregateId": rid}, {"aggregateId": rid, "reason": " "}):
            self.no_reason(P.call("POST", "/events/reservations", bad, token=self.at))
        self.assertEqual(psql(f"SELECT count(*) FROM sb_outbox WHERE aggregate_id = '{rid}'"
                              " AND published_at IS NULL"), [["0"]])
        # one that re-publishes nothing records nothing either
        st, rep, _ = P.call("POST", "/events/reservations",
                            {"aggregateId": str(uuid.uuid4()), "reason": "nothing there"}, token=self.at)
        self.assertEqual((st, int(rep.get("republished", 0))), (200, 0), rep)
        self.assertEqual(self.audit_events_written("reservation"), before)
        st, rep, _ = P.call("POST", "/events/reservations", {"aggregateId": rid, "reason": "billing lost them"},
                            token=self.at)
        self.assertEqual((st, int(rep["republished"])), (200, 1), rep)
        row, = self.audited(rid)
        self.assertRow(row, "reservation", "ReplayEvents", "events", rid, "billing lost them")
        self.assertIn("1 reservation.* events re-published", row["after"])

        # a delivery (to auth, which consumes member events): recorded with the event it applied
        agg = str(uuid.uuid4())
        at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        payload = pb((1, str(uuid.uuid4())), (2, at))
        eid = str(uuid.uuid4())
        for bad in ("", "  ", "z" * 501):
            st, body, _ = deliver(P, self.at, "auth", "member.password_changed", agg, payload, eid, reason=bad)
            self.no_reason((st, body, None))
        st, body, _ = deliver(P, self.at, "auth", "member.password_changed", agg, payload, eid,
                              reason="the consumer was down")
        self.assertEqual((st, body.get("duplicate", False)), (200, False), body)  # the refusals left no trace
        row, = self.audited(eid)
        self.assertRow(row, "auth", "DeliverEvent", "event", eid, "the consumer was down")
        self.assertEqual(row["after"], f"member.password_changed of {agg} handled")
        # the same event again changes nothing and records nothing
        st, body, _ = deliver(P, self.at, "auth", "member.password_changed", agg, payload, eid,
                              reason="once more")
        self.assertEqual((st, body.get("duplicate")), (200, True), body)
        self.assertEqual(int(psql("SELECT count(*) FROM sb_outbox WHERE type = 'audit.admin_action'"
                                  f" AND position(convert_to('{eid}', 'UTF8') IN envelope) > 0",
                                  "auth")[0][0]), 1)

    def test_only_admins_read_the_log(self):
        _, ut = P.user()
        self.assertError(P.call("GET", "/admin/audit", token=ut["accessToken"]), 403, "PERMISSION_DENIED")
        self.assertError(P.call("GET", "/admin/audit", token=self.pt["accessToken"]), 403,
                         "PERMISSION_DENIED")
        self.assertError(P.call("GET", "/admin/audit"), 401, "UNAUTHENTICATED")
        # nor send audit events into it
        st, body, _ = deliver(P, ut["accessToken"], "auth", "audit.admin_action", "x", b"")
        self.assertEqual(st, 403, body)


if __name__ == "__main__":
    unittest.main(verbosity=2)
