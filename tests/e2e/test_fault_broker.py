#!/usr/bin/env python3
"""Fault test (issue 14): the broker stopped during approvals, and the
reservation service killed while it applies them: every effect exactly once.

The whole platform runs against a Kafka broker and a PostgreSQL cluster of
this test's own (sbservers.PrivateKafka / PrivatePostgres: the shared ones
are never stopped), in its own namespace. An approval writes a
performance.approved event to the performance service's outbox in the
approval's transaction; the relay publishes it; the reservation service
consumes it and builds each schedule's seat map in its inbox transaction.

 1. A planner registers several performances; the admin approves some, the
    broker is killed (SIGKILL, no clean shutdown), more are approved (they
    must succeed: the events wait in the outbox), the broker starts again
    (same data), the rest are approved.
 2. Large performances are approved and the reservation service is killed
    with SIGKILL as soon as it has started applying them, then restarted.
 3. A performance over INVENTORY_INLINE_SEATS is approved and the
    reservation service is killed while its seat-fill job creates the seats
    schedule by schedule, then restarted: the job resumes at the next
    pending schedule and creates nothing twice.

After each: every approved schedule's seat map in the reservation database
has exactly the layout's seats (per grade, no duplicates, nothing else), the
reservation inbox has each approval event once, no dead letters, and no
outbox of any service holds an unpublished event.

Takes about 60-120 s (two broker starts, one of them after a SIGKILL; the
killed consumer's group session expiring, 10 s)."""
import datetime as dt
import os
import secrets
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from sbplatform import ADMIN_BASE, ADMIN_LOGIN, ADMIN_PASSWORD, SERVICES, Platform  # noqa: E402
from sbservers import PrivateKafka, PrivatePostgres  # noqa: E402

NS = "test_fbrk"  # databases sb_<svc>_test_fbrk, topics sb.<x>.test_fbrk
PG = KAFKA = P = None


def setUpModule():
    global PG, KAFKA, P
    PG, KAFKA = PrivatePostgres(), PrivateKafka()
    try:
        PG.start()
        KAFKA.start()
        P = Platform(env={"DATABASE_URL": PG.url(), "KAFKA_BROKERS": KAFKA.brokers, "SB_NAMESPACE": NS,
                          "LOGIN_RATE_LIMIT": "1000000"}).__enter__()
    except BaseException:
        KAFKA.close()
        PG.close()
        raise


def tearDownModule():
    try:
        if P:
            P.__exit__(None, None, None)
    finally:
        KAFKA.close()
        PG.close()


def future(days, hours=0):
    t = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days, hours=hours)
    return t.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def db(service):
    return f"sb_{service}_{NS}"


def metric(service, name):
    """A counter from the service's admin /metrics (0 when absent)."""
    port = ADMIN_BASE + 1 + SERVICES.index(service)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0


class BrokerFaults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.admin = P.login(ADMIN_LOGIN, ADMIN_PASSWORD)
        cls.planner, cls.pt = P.user("PLANNER")
        cls.layout = {}    # scheduleId -> {grade: seats}, of every approved performance
        cls.approved = []  # performanceIds

    def create(self, schedules, grades):
        st, p, _ = P.call("POST", "/performances", {
            "title": f"Fault {secrets.token_hex(3)}", "venue": "Hall K", "category": "PLAY",
            "runningMinutes": 100, "schedules": [{"startsAt": future(30 + i, i)} for i in range(schedules)],
            "grades": [{"grade": g, "price": 10000 * (i + 1), "seatCount": n} for i, (g, n) in enumerate(grades)]},
            token=self.pt["accessToken"])
        self.assertEqual(st, 201, p)
        return p

    def approve(self, p):
        t0 = time.monotonic()
        st, body, _ = P.call("POST", f"/performances/{p['performanceId']}/approve", {"reason": "reviewed"},
                             token=self.admin["accessToken"])
        self.assertEqual(st, 200, body)
        self.assertEqual(body["status"], "APPROVED")
        self.assertLess(time.monotonic() - t0, 10, "an approval hung")
        self.approved.append(p["performanceId"])
        grades = {g["grade"]: g["seatCount"] for g in p["grades"]}
        for s in p["schedules"]:
            self.layout[s["scheduleId"]] = grades

    def seat_counts(self):
        """{scheduleId: {grade: (rows, distinct seat ids)}} in the reservation database."""
        out = {}
        for sid, grade, n, distinct in PG.query(
                "SELECT schedule_id, grade, count(*), count(DISTINCT seat_id) FROM seats GROUP BY 1, 2",
                db("reservation")):
            out.setdefault(sid, {})[grade] = (int(n), int(distinct))
        return out

    def unpublished(self):
        return {s: int(PG.query("SELECT count(*) FROM sb_outbox WHERE published_at IS NULL", db(s))[0][0])
                for s in SERVICES}

    def wait_complete(self, timeout=90):
        """Until every approved schedule's seat map is complete and no outbox
        holds an unpublished event."""
        want = {sid: {g: (n, n) for g, n in grades.items()} for sid, grades in self.layout.items()}
        deadline = time.time() + timeout
        while True:
            have, backlog = self.seat_counts(), self.unpublished()
            if have == want and not any(backlog.values()):
                return
            if time.time() > deadline:
                missing = {sid: have.get(sid) for sid in want if have.get(sid) != want[sid]}
                self.fail(f"not complete after {timeout}s: schedules not as laid out {missing}; "
                          f"extra {set(have) - set(want)}; unpublished {backlog}")
            time.sleep(0.25)

    def check_exactly_once(self):
        self.wait_complete()
        # each approval's event was handled once, and nothing else
        rows = PG.query("SELECT type, count(*) FROM sb_inbox GROUP BY 1", db("reservation"))
        self.assertEqual({t: int(n) for t, n in rows}, {"performance.approved": len(self.approved)})
        self.assertEqual(PG.query("SELECT count(*) FROM sb_dead_letters", db("reservation")), [["0"]])
        rows = PG.query("SELECT performance_id, status, version FROM inv_performances", db("reservation"))
        self.assertEqual({r[0] for r in rows}, set(self.approved))
        self.assertEqual({r[1] for r in rows}, {"ON_SALE"})
        n = PG.query("SELECT count(*) FROM sb_outbox WHERE type = 'performance.approved'", db("performance"))
        self.assertEqual(int(n[0][0]), len(self.approved))
        print(f"\n{len(self.approved)} approvals, {len(self.layout)} seat maps exactly once;"
              f" reservation consumer duplicates dropped so far:"
              f" {metric('reservation', 'sb_consumer_duplicates_total'):.0f}", file=sys.stderr)

    def test_1_broker_stopped_during_approvals(self):
        shows = [self.create(2, [("VIP", 20), ("R", 60)]) for _ in range(8)]
        for p in shows[:3]:
            self.approve(p)
        KAFKA.kill()  # SIGKILL: whatever was in flight is cut off
        t_down = time.monotonic()
        for p in shows[3:6]:
            self.approve(p)  # the events wait in the outbox
        self.assertGreaterEqual(self.unpublished()["performance"], 3, "the outbox should hold the approvals")
        KAFKA.start()
        print(f"\nbroker down {time.monotonic() - t_down:.1f}s (restart included)", file=sys.stderr)
        for p in shows[6:]:
            self.approve(p)
        self.check_exactly_once()

    def test_2_reservation_killed_while_applying(self):
        self.wait_complete()  # nothing of test 1 pending
        # 4 x 3 schedules x 12,000 seats: applying them takes the consumer a
        # noticeable time (about 2 s here). Killed as soon as the first seat
        # map is written, the rest still to come (one maybe half-way in its
        # transaction, an offset commit racing the kill). Should a faster
        # machine or apply finish them all before the poll sees one, another
        # batch is tried.
        for attempt in range(3):
            big = [self.create(3, [("VIP", 2000), ("R", 5000), ("S", 5000)]) for _ in range(4)]
            in_sql = ",".join(f"'{s['scheduleId']}'" for p in big for s in p["schedules"])
            total = 3 * len(big)
            for p in big:
                self.approve(p)
            deadline = time.time() + 60
            while True:
                done = int(PG.query(f"SELECT count(DISTINCT schedule_id) FROM seats"
                                    f" WHERE schedule_id IN ({in_sql})", db("reservation"))[0][0])
                if done:
                    break
                self.assertLess(time.time(), deadline, "the reservation service never applied the approvals")
                time.sleep(0.005)
            if done < total:
                break
            print(f"\nattempt {attempt + 1}: all {total} seat maps written before the kill; again",
                  file=sys.stderr)
        P.kill("reservation")
        print(f"\nreservation killed (SIGKILL) with {done} of {total} seat maps written", file=sys.stderr)
        self.assertLess(done, total, "killed too late three times: every seat map was already written")
        P.start_service("reservation")
        P.wait_ready()
        self.check_exactly_once()

    def test_3_reservation_killed_while_the_seat_fill_job_runs(self):
        self.wait_complete()  # nothing of test 2 pending
        # 8 schedules x 20,000 seats = 160,000 > INVENTORY_INLINE_SEATS
        # (100,000): the approval only marks the schedules pending and the
        # seat-fill job creates them one schedule per transaction
        p = self.create(8, [("VIP", 5000), ("R", 5000), ("S", 5000), ("A", 5000)])
        sids = {s["scheduleId"] for s in p["schedules"]}
        self.approve(p)
        in_sql = ",".join(f"'{s}'" for s in sids)
        deadline = time.time() + 60
        while True:
            done = int(PG.query(f"SELECT count(*) FROM inv_schedules WHERE schedule_id IN ({in_sql})"
                                " AND NOT seats_pending", db("reservation"))[0][0])
            if done >= 1:
                break
            self.assertLess(time.time(), deadline, "the seat-fill job never completed a schedule")
            time.sleep(0.01)
        P.kill("reservation")
        print(f"\nreservation killed (SIGKILL) with {done} of {len(sids)} schedules filled", file=sys.stderr)
        self.assertLess(done, len(sids), "killed too late: every schedule was already filled")
        P.start_service("reservation")
        P.wait_ready()
        self.check_exactly_once()
        self.assertEqual(PG.query("SELECT count(*) FROM inv_schedules WHERE seats_pending", db("reservation")),
                         [["0"]])


if __name__ == "__main__":
    unittest.main(verbosity=2)
