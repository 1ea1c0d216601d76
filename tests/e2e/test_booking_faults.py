#!/usr/bin/env python3
"""Booking under faults (issue 10), with two replicas of the reservation
service running (the gateway talks to the first; both run the hold-expiry
job and the consumer) and holds of HOLD_TTL_S = 2 s:

  expiry  holds past their deadline are free at once for every reader and
          for new holds while the expiry job cannot run (the test holds its
          advisory lock), then the job ends each exactly once (EXPIRED, seats
          free unless a new hold took them, one log row, one
          reservation.expired) within seconds of getting the lock
  crash   kill -9 of the reservation service while 100 holds are in flight,
          restart: every hold exists with all its seats or left no trace

Run by CTest with the real binaries and servers; see sbplatform.py."""
import concurrent.futures as cf
import os
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from booking import approved_show, mint, psql, seat_status, wait_for  # noqa: E402
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, ADMIN_BASE, GRPC_BASE, SERVICES, Platform  # noqa: E402

P = None
ADMIN = None
TTL_S = 2
RESV = SERVICES.index("reservation") + 1
PORTS = {"reservation": (GRPC_BASE + RESV, ADMIN_BASE + RESV),
         "reservation-2": (GRPC_BASE + 40, ADMIN_BASE + 40)}


TTL = {}  # the HOLD_TTL_S each running replica was started with


def start_replica(label, ttl=TTL_S):
    grpc, admin = PORTS[label]
    binary = os.path.join(P.build, "services", "reservation", "sb-reservation")
    p = P.start("reservation", binary, {"GRPC_PORT": str(grpc), "ADMIN_PORT": str(admin),
                                        "HOLD_TTL_S": str(ttl)}, label=label)
    TTL[label] = ttl
    wait_for(lambda: p.poll() is None and ready(admin), 60, f"{label} ready")
    return p


def ready(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def serving_ttl(ttl):
    """The replica the gateway calls makes holds of ttl seconds."""
    if TTL.get("reservation", TTL_S) != ttl:
        P.kill("reservation")
        start_replica("reservation", ttl)


def setUpModule():
    global P, ADMIN
    P = Platform(env={"HOLD_TTL_S": str(TTL_S), "GATEWAY_TIMEOUT_MS": "30000"}).__enter__()
    try:
        start_replica("reservation-2")
        ADMIN = P.login(ADMIN_LOGIN, ADMIN_PASSWORD)
    except BaseException:
        P.__exit__(None, None, None)
        raise


def tearDownModule():
    P.__exit__(None, None, None)


class ExpiryJobLock:
    """Holds the hold-expiry job's advisory lock (SB_LOCK_JOB("hold-expiry"))
    from a psql session of the test, so no replica can tick: what readers
    see meanwhile is the lazy expiry alone."""

    def __enter__(self):
        db = f"sb_reservation_{os.environ.get('SB_NAMESPACE', 'test')}"
        url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        app = self.app = f"sb-test-expiry-lock-{os.getpid()}"
        self.proc = subprocess.Popen(
            ["psql", f"{url.rsplit('/', 1)[0]}/{db}", "-v", "ON_ERROR_STOP=1", "-qAt",
             "-c", "SELECT pg_advisory_lock(hashtextextended('sb:job:' || 'hold-expiry', 0))",
             "-c", "SELECT pg_sleep(120)"], env=dict(os.environ, PGAPPNAME=app), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        wait_for(lambda: psql("SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid"
                              f" WHERE a.application_name = '{app}' AND l.locktype = 'advisory'"
                              " AND l.granted") == [["1"]], 30, "the expiry job's lock held by the test")
        return self

    def __exit__(self, *exc):
        # the server does not notice a client gone during pg_sleep: end the
        # session from the server side, and the lock goes with it
        psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{self.app}'")
        self.proc.wait()
        return False


class Faults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.planner, cls.pt = P.user("PLANNER")

    def test_expiry_lazy_then_active_with_two_replicas(self):
        _, (sid,) = approved_show(P, self.pt["accessToken"], ADMIN["accessToken"],
                                  grades=[{"grade": "R", "price": 1000, "seatCount": 40}])
        serving_ttl(TTL_S)
        holds = []
        with ExpiryJobLock():
            for i in range(20):
                _, tok = mint(P)
                st, r, _ = P.call("POST", "/reservations", {"scheduleId": sid, "seatIds": [f"R-A-{i + 1}"]},
                                  token=tok)
                self.assertEqual(st, 201, r)
                holds.append((tok, r))
            self.assertEqual(sum(v == "HELD" for v in seat_status(P, sid).values()), 20)
            time.sleep(TTL_S + 0.5)
            # lazily: free for every reader and for new holds, though no job ran
            self.assertEqual(set(seat_status(P, sid).values()), {"AVAILABLE"})
            tok0, r0 = holds[0]
            self.assertEqual(P.call("GET", f"/reservations/{r0['reservationId']}", token=tok0)[1]["status"], "EXPIRED")
            st, v, _ = P.call("GET", f"/performances/{r0['performanceId']}/reservations", token=self.pt["accessToken"])
            self.assertEqual([(g["free"], g["held"]) for g in v["schedules"][0]["grades"]], [(40, 0)])
            newcomer, ntok = mint(P)
            st, taken, _ = P.call("POST", "/reservations", {"scheduleId": sid, "seatIds": ["R-A-1"]}, token=ntok)
            self.assertEqual(st, 201, taken)
            stored = psql(f"SELECT count(*) FROM reservations WHERE schedule_id = '{sid}'"
                          " AND status = 'PENDING_PAYMENT'")
            self.assertEqual(stored, [["21"]])  # nothing written yet: the job could not run
        # actively: once the lock is free a replica's job ends them all within seconds
        t0 = time.time()
        ids = [r["reservationId"] for _, r in holds]
        in_list = "(" + ",".join(f"'{i}'" for i in ids) + ")"
        wait_for(lambda: psql(f"SELECT count(*) FROM reservations WHERE reservation_id IN {in_list}"
                              " AND status = 'EXPIRED'") == [["20"]], 10, "20 holds EXPIRED")
        print(f"expiry job: 20 holds ended {time.time() - t0:.2f}s after the lock was free", file=sys.stderr)
        # once each: one log row, one event per reservation, whichever replica did it
        self.assertEqual(psql(f"SELECT count(*), count(DISTINCT reservation_id) FROM reservation_log"
                              f" WHERE reservation_id IN {in_list} AND to_status = 'EXPIRED' AND actor = 'system'"),
                         [["20", "20"]])
        self.assertEqual(psql(f"SELECT count(*), count(DISTINCT aggregate_id) FROM sb_outbox"
                              f" WHERE aggregate_id IN {in_list} AND type = 'reservation.expired'"), [["20", "20"]])
        # the seat a newcomer took stays theirs; the others are free in the table too
        seats = psql(f"SELECT seat_id, status, COALESCE(reservation_id::text, '') FROM seats"
                     f" WHERE schedule_id = '{sid}' AND status <> 'AVAILABLE'")
        self.assertEqual(seats, [["R-A-1", "HELD", taken["reservationId"]]])
        # a DELETE of an expired hold answers its state
        st, c, _ = P.call("DELETE", f"/reservations/{ids[1]}", token=holds[1][0])
        self.assertEqual((st, c["status"]), (200, "EXPIRED"))
        logs = [r for n, _, _ in P.procs if n.startswith("reservation")
                for r in open(os.path.join(P.logdir, f"{n}.log")) if "hold expiry:" in r]
        self.assertTrue(logs)

    def test_kill_9_during_100_holds(self):
        serving_ttl(600)  # no hold may expire before it is checked
        _, (sid,) = approved_show(P, self.pt["accessToken"], ADMIN["accessToken"],
                                  grades=[{"grade": "R", "price": 1000, "seatCount": 400}])
        buyers = []
        for i in range(100):
            _, tok = mint(P)
            body = ({"scheduleId": sid, "grade": "R", "quantity": 2} if i % 2 else
                    {"scheduleId": sid, "seatIds": [f"R-{'KLMNOPQRST'[i % 10]}-{i // 10 + 1}",
                                                    f"R-{'KLMNOPQRST'[i % 10]}-{i // 10 + 11}"]})
            buyers.append((tok, body))
        go = threading.Event()
        answered = []

        def buy(b):
            go.wait()
            r = P.call("POST", "/reservations", b[1], token=b[0])
            answered.append(r[0])
            return r

        with cf.ThreadPoolExecutor(max_workers=100) as ex:
            futures = [ex.submit(buy, b) for b in buyers]
            time.sleep(0.3)
            go.set()
            deadline = time.time() + 10
            while len(answered) < 10 and time.time() < deadline:
                time.sleep(0.002)
            # counted before the kill: once it is dead the holds in flight come
            # back 503 at once, and counting after P.kill returns (it waits for
            # the process to end) could see all 100 answered
            killed_after = len(answered)
            P.kill("reservation")  # with most holds in flight
            start_replica("reservation", 600)  # as make run's supervisor would
            results = [f.result() for f in futures]
        ok = [b for st, b, _ in results if st == 201]
        print(f"crash: killed after {killed_after} answers; {len(ok)} holds answered 201,"
              f" others {sorted({st for st, _, _ in results if st != 201})}", file=sys.stderr)
        self.assertLess(killed_after, 100, "every hold had finished before the kill")
        # a hold is whole or absent: every reservation has exactly its seats;
        # no seat is held by a reservation that does not exist; each has its
        # created event (same transaction); every 201 exists
        rows = psql(
            "SELECT r.reservation_id::text, r.status, cardinality(r.seat_ids),"
            " (SELECT count(*) FROM seats s WHERE s.schedule_id = r.schedule_id"
            "   AND s.reservation_id = r.reservation_id AND s.seat_id = ANY(r.seat_ids)),"
            " (SELECT count(*) FROM sb_outbox o WHERE o.aggregate_id = r.reservation_id::text"
            "   AND o.type = 'reservation.created')"
            f" FROM reservations r WHERE r.schedule_id = '{sid}'")
        for rid, status, n, held, created in rows:
            with self.subTest(reservation=rid):
                self.assertEqual((status, held, created), ("PENDING_PAYMENT", n, "1"))
        orphans = psql(f"SELECT count(*) FROM seats s WHERE s.schedule_id = '{sid}' AND s.status <> 'AVAILABLE'"
                       " AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.reservation_id = s.reservation_id)")
        self.assertEqual(orphans, [["0"]])
        self.assertTrue({b["reservationId"] for b in ok} <= {r[0] for r in rows})
        # and the service serves again (once the gateway has reconnected)
        _, tok = mint(P)
        last = []
        wait_for(lambda: last.append(P.call("POST", "/reservations", {"scheduleId": sid, "seatIds": ["R-J-20"]},
                                            token=tok)) or last[-1][0] != 503, 20, "a hold after the restart")
        self.assertEqual(last[-1][0], 201, last[-1])


if __name__ == "__main__":
    unittest.main()
