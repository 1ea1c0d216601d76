#!/usr/bin/env python3
"""The admin events API (issue 12, SPEC section 3): POST /events/reservations,
/events/payments and /events/cancellations re-publish the events of one
aggregate id and/or of a time range [since, until) from the producing
service's outbox; POST /events/{serviceId} hands one event envelope to that
service's consumer.

Access per path and role, the 400s (nothing changed by any of them), then one
real booking through the gateway with sb-paysim (hold -> POST /payments ->
CONFIRMED -> DELETE -> CANCELLED and refunded) mailed to a local SMTP server,
and each replay done TWICE: the events really go out again on Kafka (the
messages of the aggregate's key, read back with kcat, grow, in their
original order, with their original event ids), and nothing happens a second
time anywhere: no second notice or mail, the reservation's state and log,
the payment's rows and sb-paysim's totals (no second refund) unchanged, while
every consumer's inbox counts the copies as duplicates
(sb_consumer_duplicates_total) and logs each id as already processed.

The real binaries with the real PostgreSQL/Redis/Kafka (sbplatform.py)."""
import base64
import datetime as dt
import os
import subprocess
import sys
import time
import unittest
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from booking import approved_show, deliver, pb, pb_fields, psql, wait_for  # noqa: E402
from sbplatform import ADMIN_BASE, ADMIN_LOGIN, ADMIN_PASSWORD, SERVICES, Platform  # noqa: E402

NS = os.environ.get("SB_NAMESPACE", "test")
OK_CARD = "4242424242424242"
REPLAYS = ("/events/reservations", "/events/payments", "/events/cancellations")

P = None


def setUpModule():
    global P
    P = Platform(env={"GATEWAY_TIMEOUT_MS": "15000", "MAIL_RETRY_BASE_MS": "200",
                      "MAIL_RETRY_MAX_MS": "2000"}).__enter__()


def tearDownModule():
    P.__exit__(None, None, None)


def now_rfc3339(delta_s=0.0):
    t = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=delta_s)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def metric(service, name):
    """A counter from the service's admin /metrics (0 when absent)."""
    port = ADMIN_BASE + 1 + SERVICES.index(service)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0


def duplicates(service):
    return metric(service, "sb_consumer_duplicates_total")


def kafka(topic, key):
    """[(event id, type)] of every message on topic keyed `key`, in the
    partition's order (kcat from the beginning to the end; key and value read
    by their lengths, %K and %S, as the envelopes are binary)."""
    out = subprocess.run(["kcat", "-b", os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092"), "-C", "-t", topic,
                          "-o", "beginning", "-e", "-q", "-f", "%K %S %k%s"],
                         capture_output=True, timeout=60).stdout
    msgs, i = [], 0
    while i < len(out):
        klen_end = out.index(b" ", i)
        klen = max(int(out[i:klen_end]), 0)
        slen_end = out.index(b" ", klen_end + 1)
        slen = max(int(out[klen_end + 1:slen_end]), 0)
        k = out[slen_end + 1:slen_end + 1 + klen]
        v = out[slen_end + 1 + klen:slen_end + 1 + klen + slen]
        i = slen_end + 1 + klen + slen
        if k.decode() == key:
            env = pb_fields(v)
            msgs.append((env[1][0].decode(), env[2][0].decode()))
    return msgs


def outbox(service, aggregate):
    """[(event id, type, payload bytes)] of the aggregate in the service's outbox, oldest first."""
    rows = psql(f"SELECT event_id, type, encode(envelope, 'hex') FROM sb_outbox WHERE aggregate_id = '{aggregate}'"
                " ORDER BY id", service=service)
    return [(e, t, pb_fields(bytes.fromhex(h)).get(7, [b""])[0]) for e, t, h in rows]


def outbox_state(service):
    """What a replay would change: the unsent rows and the latest publish time."""
    return psql("SELECT count(*) FILTER (WHERE published_at IS NULL), max(published_at) FROM sb_outbox",
                service=service)


class EventsApi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.at = P.login(ADMIN_LOGIN, ADMIN_PASSWORD)["accessToken"]
        cls.planner, pt = P.user("PLANNER")
        cls.pt = pt["accessToken"]
        cls.perf, (cls.sid,) = approved_show(P, cls.pt, cls.at,
                                             grades=[{"grade": "R", "price": 70000, "seatCount": 20}])

    def assertError(self, resp, status, code, *words):
        st, body, _ = resp
        self.assertEqual(st, status, body)
        self.assertEqual(body["error"]["code"], code, body)
        for w in words:
            self.assertIn(w, body["error"]["message"])

    def settled(self):
        """Waits until neither producer has an unsent outbox row."""
        for s in ("reservation", "payment"):
            wait_for(lambda: outbox_state(s)[0][0] == "0", 30, f"{s} outbox published")

    # ---- access and input ----
    def test_access_and_bad_input(self):
        _, ut = P.user("USER")
        body = {"since": now_rfc3339(-60), "reason": "access check"}
        for path in REPLAYS:
            self.assertError(P.call("POST", path, body), 401, "UNAUTHENTICATED")
            self.assertError(P.call("POST", path, body, token=ut["accessToken"]), 403, "PERMISSION_DENIED")
            self.assertError(P.call("POST", path, body, token=self.pt), 403, "PERMISSION_DENIED")
            st, rep, _ = P.call("POST", path, body, token=self.at)
            self.assertEqual(st, 200, rep)
            self.assertGreaterEqual(int(rep.get("republished", 0)), 0)
        ev = {"eventId": str(uuid.uuid4()), "type": "member.password_changed", "aggregateId": str(uuid.uuid4()),
              "payload": "", "reason": "access check"}
        for svc in ("reservation", "payment", "notification", "auth"):
            self.assertError(P.call("POST", f"/events/{svc}", ev), 401, "UNAUTHENTICATED")
            self.assertError(P.call("POST", f"/events/{svc}", ev, token=ut["accessToken"]), 403, "PERMISSION_DENIED")
            self.assertError(P.call("POST", f"/events/{svc}", ev, token=self.pt), 403, "PERMISSION_DENIED")
        # an unknown service: 404 with a JSON error
        st, err, _ = P.call("POST", "/events/nosuch", ev, token=self.at)
        self.assertEqual(st, 404, err)
        self.assertIn("code", err["error"])

        # 400s, and none of them changed an outbox row
        self.settled()
        before = {s: outbox_state(s) for s in ("reservation", "payment")}
        since, until = now_rfc3339(-3600), now_rfc3339()
        bad = [({"since": since}, "reason"),
               ({"aggregateId": str(uuid.uuid4()), "reason": " \t"}, "reason"),
               ({"since": since, "reason": "r" * 501}, "reason"),
               ({}, "aggregateId"),
               ({"until": until}, "aggregateId"),
               ({"since": "yesterday"}, "since"),
               ({"since": "2030-02-30T00:00:00Z"}, "since"),
               ({"since": since, "until": "soon"}, "until"),
               ({"since": until, "until": since}, "until"),
               ({"since": since, "until": since}, "until"),
               ({"aggregateId": "nope"}, "aggregateId"),
               ({"aggregateId": "1234", "since": since}, "aggregateId")]
        for path in REPLAYS:
            for b, word in bad:
                b = b if word == "reason" else dict(b, reason="bad input")
                self.assertError(P.call("POST", path, b, token=self.at), 400, "INVALID_ARGUMENT", word)
        self.assertEqual({s: outbox_state(s) for s in ("reservation", "payment")}, before)
        self.assertIn("replaying every event", P.call("POST", "/events/payments", {"reason": "all"},
                                                      token=self.at)[1]["error"]["message"])

    # ---- one booking, its events replayed twice ----
    def test_booking_replayed_twice_no_second_effect(self):
        m, pw = P.signup("USER")
        tok = P.login(m["loginId"], pw)["accessToken"]
        email = m["email"]
        st, r, _ = P.call("POST", "/reservations", {"scheduleId": self.sid, "seatIds": ["R-A-1", "R-A-2"]},
                          token=tok)
        self.assertEqual(st, 201, r)
        rid = r["reservationId"]
        st, p, _ = P.call("POST", "/payments", {"reservationId": rid, "amount": int(r["amount"]), "method": "CARD",
                                                "cardNumber": OK_CARD},
                          token=tok, headers={"Idempotency-Key": f"k-{uuid.uuid4()}"})
        self.assertEqual((st, p.get("status")), (201, "APPROVED"), p)
        pid = p["paymentId"]
        wait_for(lambda: P.call("GET", f"/reservations/{rid}", token=tok)[1]["status"] == "CONFIRMED", 30,
                 "CONFIRMED")
        cancel_from = now_rfc3339(-1)
        st, c, _ = P.call("DELETE", f"/reservations/{rid}", {"reason": "plans changed"}, token=tok)
        self.assertEqual((st, c.get("status")), (200, "CANCELLED"), c)
        wait_for(lambda: P.call("GET", f"/payments/{pid}", token=tok)[1]["status"] == "REFUNDED", 30, "REFUNDED")
        # every event's notice mailed: created, paid, confirmed, cancelled, refunded
        kinds = {"reservation_created", "payment_approved", "reservation_confirmed", "reservation_cancelled",
                 "payment_refunded"}
        notices = f"SELECT kind FROM notices WHERE user_id = '{m['userId']}'"
        wait_for(lambda: {k for (k,) in psql(notices, service="notification")} >= kinds, 30, "every notice")
        wait_for(lambda: len(P.smtp.mails_to(email)) >= len(kinds), 30, "every mail")
        wait_for(lambda: psql("SELECT count(*) FROM mail_queue q JOIN notices n USING (notice_id)"
                              f" WHERE n.user_id = '{m['userId']}' AND q.status <> 'SENT'",
                              service="notification") == [["0"]], 30, "mail queue drained")
        self.settled()

        resv_events = outbox("reservation", rid)
        pay_events = outbox("payment", rid)  # payment events are keyed by the reservation id
        self.assertEqual([t for _, t, _ in resv_events],
                         ["reservation.created", "reservation.confirmed", "reservation.cancelled"])
        self.assertEqual([t for _, t, _ in pay_events], ["payment.approved", "payment.refunded"])
        resv_topic, pay_topic = f"sb.reservation.{NS}", f"sb.payment.{NS}"
        wait_for(lambda: len(kafka(resv_topic, rid)) >= 3 and len(kafka(pay_topic, rid)) >= 2, 30, "on Kafka")
        first_resv = [(e, t) for e, t, _ in resv_events]
        first_pay = [(e, t) for e, t, _ in pay_events]
        self.assertEqual(kafka(resv_topic, rid), first_resv)
        self.assertEqual(kafka(pay_topic, rid), first_pay)

        def effects():
            g = P.call("GET", f"/reservations/{rid}", token=tok)[1]
            return {
                "reservation": (g["status"], g["version"], [(x.get("fromStatus"), x["toStatus"]) for x in g["log"]]),
                "reservation_rows": psql(f"SELECT status, version, payment_id FROM reservations WHERE reservation_id"
                                         f" = '{rid}'"),
                "payment": psql(f"SELECT payment_id, status, refund_requested_at FROM payments WHERE reservation_id"
                                f" = '{rid}'", service="payment"),
                "payment_log": psql(f"SELECT count(*) FROM payment_log l JOIN payments p USING (payment_id)"
                                    f" WHERE p.reservation_id = '{rid}'", service="payment"),
                "notices": sorted(psql(f"SELECT event_id, kind FROM notices WHERE user_id = '{m['userId']}'",
                                       service="notification")),
                "mails": sorted(str(x["Message-ID"]) for x in P.smtp.mails_to(email)),
                "paysim": P.provider("GET", "/v1/admin/totals")[1],
                "inbox": {s: psql(f"SELECT count(*) FROM sb_inbox WHERE event_id IN ("
                                  + ",".join(f"'{e}'" for e, _ in first_resv + first_pay) + ")", service=s)
                          for s in ("reservation", "payment", "notification")},
            }
        base = effects()
        self.assertEqual(base["reservation"][0], "CANCELLED")
        self.assertEqual(base["payment"][0][1], "REFUNDED")

        def replay(path, body, topic, want_ids, consumers):
            """POST path twice; each time: the answer names want_ids, the
            messages of rid's key on topic grow by want_ids in order, every
            consumer drops each as a duplicate, and no effect changes."""
            for round_ in (1, 2):
                on_kafka = kafka(topic, rid)
                dups = {s: duplicates(s) for s in consumers}
                st, rep, _ = P.call("POST", path, dict(body, reason=f"replay check {round_}"), token=self.at)
                self.assertEqual(st, 200, rep)
                self.assertGreaterEqual(int(rep["republished"]), len(want_ids), rep)
                self.assertEqual(len(rep["eventIds"]), min(int(rep["republished"]), 100), rep)
                if "aggregateId" in body:
                    self.assertEqual(rep["eventIds"], [e for e, _ in want_ids], rep)
                else:
                    for e, _ in want_ids:
                        self.assertIn(e, rep["eventIds"])
                # out again on Kafka: the same event ids, in their original order
                wait_for(lambda: len(kafka(topic, rid)) >= len(on_kafka) + len(want_ids), 30,
                         f"{path} round {round_} on Kafka")
                self.assertEqual(kafka(topic, rid), on_kafka + want_ids)
                # each consumer of the topic saw them (all the replayed events
                # are ones it had) and dropped them as duplicates
                for s in consumers:
                    wait_for(lambda: duplicates(s) >= dups[s] + int(rep["republished"]), 30,
                             f"{s} duplicates after {path} round {round_}")
                    log = P.log_text(s)
                    for e, t in want_ids:
                        self.assertIn(f"event {t} {e} already processed: dropped", log)
                self.settled()
                self.assertEqual(effects(), base, f"{path} round {round_}")

        # reservation events of the aggregate: consumed by payment and notification
        replay("/events/reservations", {"aggregateId": rid.upper()}, resv_topic, first_resv,
               ("payment", "notification"))
        # payment events (keyed by the reservation id): consumed by reservation and notification
        replay("/events/payments", {"aggregateId": rid}, pay_topic, first_pay, ("reservation", "notification"))
        # cancellations in a time range: this test's only reservation.cancelled
        cancelled = [(e, t) for e, t in first_resv if t == "reservation.cancelled"]
        replay("/events/cancellations", {"since": cancel_from, "until": now_rfc3339(1)}, resv_topic, cancelled,
               ("payment", "notification"))
        # both filters together: the aggregate's events within the range
        st, rep, _ = P.call("POST", "/events/cancellations",
                            {"aggregateId": rid, "since": cancel_from, "reason": "both filters"}, token=self.at)
        self.assertEqual((st, rep.get("eventIds")), (200, [cancelled[0][0]]), rep)
        st, rep, _ = P.call("POST", "/events/cancellations",
                            {"aggregateId": str(uuid.uuid4()), "since": cancel_from, "reason": "none match"},
                            token=self.at)
        self.assertEqual((st, int(rep.get("republished", 0)), rep.get("eventIds", [])), (200, 0, []), rep)
        self.settled()
        self.assertEqual(effects(), base)
        # the replays are logged with the admin, the filters and the count
        log = P.log_text("reservation")
        self.assertIn(f"replay of reservation.* events (aggregate {rid}, since -, until -) by admin", log)
        self.assertIn("replay of reservation.cancelled* events (aggregate any, since " + cancel_from, log)

        # ---- POST /events/{serviceId}: a known event id is a duplicate ----
        known = {"reservation": pay_events[0], "payment": resv_events[2], "notification": resv_events[0]}
        for svc, (eid, type_, payload) in known.items():
            st, body, _ = deliver(P, self.at, svc, type_, rid, payload, event_id=eid)
            self.assertEqual((st, body.get("eventId"), body.get("duplicate")), (200, eid, True), (svc, body))
        # auth consumes member events: one delivered, then again
        payload = pb((1, str(uuid.uuid4())), (2, now_rfc3339()))
        st, body, eid = deliver(P, self.at, "auth", "member.password_changed", str(uuid.uuid4()), payload)
        self.assertEqual((st, body.get("duplicate", False)), (200, False), body)
        st, body, _ = deliver(P, self.at, "auth", "member.password_changed", str(uuid.uuid4()), payload, eid)
        self.assertEqual((st, body.get("duplicate")), (200, True), body)
        # the performance service consumes nothing
        st, body, _ = deliver(P, self.at, "performance", "member.password_changed", rid, payload)
        self.assertEqual(st, 400, body)
        self.assertEqual(body["error"]["code"], "FAILED_PRECONDITION", body)
        self.settled()
        self.assertEqual(effects(), base)


if __name__ == "__main__":
    unittest.main(verbosity=2)
