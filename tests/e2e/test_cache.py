#!/usr/bin/env python3
"""Reads served from memory (issue 13): the public catalog reads declared
with (sb.api.method).cache answer with an ETag and Cache-Control, a matching
If-None-Match gets 304 with no body, writes and refused holds clear what
they change in the serving process at once, and an answer that depends on
the caller is never served to another caller.

The gateway keeps its own copy of these answers (the JSON body, keyed as
the services key theirs): a repeat never reaches the service, and an answer
it filled from a service's cached answer lives only for what was left of
that answer's age, so the lag bound stays one max age end to end.

Run by CTest with the real member, auth, performance, reservation and gateway
binaries and the real PostgreSQL/Redis/Kafka; see sbplatform.py. One replica
per service: every change below is seen at once (in-process invalidation),
so nothing here waits for the lag bound (max age, 1 s) except where noted."""
import os
import re
import signal
import socket
import sys
import time
import unittest
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
import attack_matrix  # noqa: E402
from booking import approved_show, future, mint, psql, seat_status, wait_for  # noqa: E402
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, GRPC_BASE, SERVICES, Platform  # noqa: E402

P = None
ADMIN = None
T = None  # direct gRPC to the services (no gateway in between)
SEAT_MAP = "/sb.reservation.ReservationService/GetSeatMap"
MAX_AGE_S = 1.0  # GetSeatMap's max_age_ms (proto/reservation.proto)


def setUpModule():
    global P, ADMIN, T
    build = os.environ.get("SB_BUILD_DIR") or os.path.join(HERE, "..", "..", "build")
    attack_matrix.load_stubs(os.environ.get("SB_PY_STUBS") or os.path.join(build, "py"))
    P = Platform(["member", "auth", "performance", "reservation"]).__enter__()
    try:
        ADMIN = P.login(ADMIN_LOGIN, ADMIN_PASSWORD)
        T = attack_matrix.Target("127.0.0.1", {s: GRPC_BASE + i for i, s in enumerate(SERVICES, start=1)},
                                 P.pki, ("", ""))
    except BaseException:
        P.__exit__(None, None, None)
        raise


def tearDownModule():
    if T:
        T.close()
    P.__exit__(None, None, None)


def cache_counts(url, method):
    """(hits, misses) of sb_rpc_cache_requests_total for method on a /metrics page."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    got = {}
    for result in ("hit", "miss"):
        m = re.search(r'^sb_rpc_cache_requests_total\{method="%s",result="%s"\} (\S+)$'
                      % (re.escape(method), result), text, re.M)
        got[result] = float(m.group(1)) if m else 0.0
    return got["hit"], got["miss"]


def metric(url, name):
    """A counter without labels on a /metrics page (0 when absent)."""
    with urllib.request.urlopen(url, timeout=10) as r:
        m = re.search(r"^%s (\S+)$" % re.escape(name), r.read().decode(), re.M)
    return float(m.group(1)) if m else 0.0


def gateway_counts(method):
    return cache_counts(f"{P.base}/metrics", method)


def service_counts(method, service="reservation"):
    return cache_counts(f"{P.admin_url(service)}/metrics", method)


def pending_show(token, title=None):
    body = {"title": title or f"Cache {uuid.uuid4().hex[:6]}", "description": "e2e", "venue": "Hall C",
            "category": "PLAY", "runningMinutes": 90, "schedules": [{"startsAt": future(30)}],
            "grades": [{"grade": "R", "price": 1000, "seatCount": 20}]}
    st, p, _ = P.call("POST", "/performances", body, token=token)
    assert st == 201, (st, p)
    return p


class Cache(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.planner, cls.pt = P.user("PLANNER")
        cls.other, cls.ot = P.user("PLANNER")
        cls.at = ADMIN["accessToken"]
        cls.perf, cls.sids = approved_show(P, cls.pt["accessToken"], cls.at)

    def get(self, path, token=None, inm=None):
        return P.call("GET", path, token=token, headers={"If-None-Match": inm} if inm else None)

    def test_etag_cache_control_and_304(self):
        pid, sid = self.perf["performanceId"], self.sids[0]
        for path, public in ((f"/performances/{pid}", False), ("/performances?pageSize=5", False),
                             (f"/schedules/{sid}/seats", True), ("/reservations?pageSize=5", True)):
            with self.subTest(path=path):
                st, body, h = self.get(path)
                self.assertEqual(st, 200, body)
                tag = h.get("ETag")
                self.assertRegex(tag or "", r'^"[0-9a-f]{16}"$', h)
                self.assertEqual(h.get("Cache-Control"), "public, max-age=1")
                self.assertEqual(h.get("Vary"), None if public else "Authorization")
                st2, body2, h2 = self.get(path)
                self.assertEqual((st2, body2), (200, body))
                self.assertEqual(h2.get("ETag"), tag, "the same answer, the same tag")
                st3, body3, h3 = self.get(path, inm=tag)
                self.assertEqual(st3, 304)
                self.assertIsNone(body3, "a 304 has no body")
                self.assertEqual(h3.get("ETag"), tag)
                self.assertEqual(self.get(path, inm=f'"0000000000000000", {tag}')[0], 304)
                self.assertEqual(self.get(path, inm='"0000000000000000"')[0], 200)
        # a signed-in caller's view of a method whose answer depends on the caller
        st, _, h = self.get(f"/performances/{pid}", token=self.pt["accessToken"])
        self.assertEqual((st, h.get("Cache-Control"), h.get("Vary")), (200, "private, no-cache", "Authorization"))
        # per-user reads carry no validators and stay no-store
        uid, tok = mint(P)
        st, r, _ = P.call("POST", "/reservations", {"scheduleId": sid, "seatIds": ["R-B-1"]}, token=tok)
        self.assertEqual(st, 201, r)
        st, _, h = self.get(f"/reservations/{r['reservationId']}", token=tok)
        self.assertEqual((st, h.get("Cache-Control"), h.get("ETag")), (200, "no-store", None))
        # an error is never a 304, whatever the client sends
        self.assertEqual(self.get(f"/performances/{uuid.uuid4()}", inm="*")[0], 404)
        # the contract says so in /openapi.json too
        doc = self.get("/openapi.json")[1]
        op = doc["paths"]["/schedules/{scheduleId}/seats"]["get"]
        self.assertEqual(op["x-sb-cache"], {"maxAgeMs": 1000, "public": True})
        self.assertIn("304", op["responses"])

    def test_edits_and_approvals_show_at_once(self):
        pt = self.pt["accessToken"]
        p = pending_show(pt)
        pid = p["performanceId"]
        path = f"/performances/{pid}"
        # the planner's view, cached for the planner, follows each edit
        st, a, h = self.get(path, token=pt)
        self.assertEqual(st, 200, a)
        self.assertEqual(self.get(path, token=pt)[2].get("ETag"), h["ETag"])
        st, _, _ = P.call("PUT", path, {"title": "Edited once"}, token=pt)
        self.assertEqual(st, 200)
        st, b, h2 = self.get(path, token=pt)
        self.assertEqual(b["title"], "Edited once")
        self.assertNotEqual(h2["ETag"], h["ETag"])
        self.assertEqual(self.get(path, token=pt, inm=h["ETag"])[0], 200, "the old tag no longer matches")
        # anonymous readers: not visible (404, never cached), the list is empty;
        # the admin approves: both show it on the next read
        mine = f"/performances?plannerId={self.planner['userId']}&status=APPROVED&pageSize=100"
        self.assertEqual(self.get(path)[0], 404)
        before = [x["performanceId"] for x in self.get(mine)[1].get("performances", [])]
        self.assertNotIn(pid, before)
        self.assertEqual(P.call("POST", f"{path}/approve", {"reason": "reviewed"}, token=self.at)[0], 200)
        st, c, _ = self.get(path)
        self.assertEqual((st, c["status"]), (200, "APPROVED"), c)
        self.assertIn(pid, [x["performanceId"] for x in self.get(mine)[1]["performances"]])
        # an edit of the approved show: the cached public answer goes at once
        self.assertEqual(self.get(path)[1]["title"], "Edited once")
        self.assertEqual(P.call("PUT", path, {"title": "Edited twice"}, token=pt)[0], 200)
        self.assertEqual(self.get(path)[1]["title"], "Edited twice")
        self.assertIn("Edited twice", [x["title"] for x in self.get(mine)[1]["performances"]])
        # cancelled: at once as well
        self.assertEqual(P.call("POST", f"{path}/cancel", {"reason": "e2e"}, token=pt)[0], 200)
        self.assertEqual(self.get(path)[1]["status"], "CANCELLED")

    def test_seat_map_never_shows_a_taken_seat_free_after_a_hold(self):
        sid = self.sids[0]
        seats = seat_status(P, sid)  # fills the cache
        self.assertEqual(seats["VIP-A-1"], "AVAILABLE")
        # a hold that succeeds: the next read shows it
        _, tok = mint(P)
        st, r, _ = P.call("POST", "/reservations", {"scheduleId": sid, "seatIds": ["VIP-A-1"]}, token=tok)
        self.assertEqual(st, 201, r)
        self.assertEqual(seat_status(P, sid)["VIP-A-1"], "HELD")
        # a seat sold behind this process's back (another replica's sale, as
        # the database has it): the cached map may show it free for up to
        # its max age, until a hold of it is refused here
        self.assertEqual(seat_status(P, sid)["VIP-A-2"], "AVAILABLE")
        psql(f"UPDATE seats SET status = 'SOLD', reservation_id = '{uuid.uuid4()}'"
             f" WHERE schedule_id = '{sid}' AND seat_id = 'VIP-A-2'")
        _, tok2 = mint(P)
        st, err, _ = P.call("POST", "/reservations", {"scheduleId": sid, "seatIds": ["VIP-A-2", "VIP-A-3"]},
                            token=tok2)
        self.assertEqual(st, 409, err)
        after = seat_status(P, sid)
        self.assertEqual(after["VIP-A-2"], "SOLD", "a refused hold clears its schedule's map")
        self.assertEqual(after["VIP-A-1"], "HELD")
        self.assertEqual(after["VIP-A-3"], "AVAILABLE", "nothing of the refused hold was taken")
        # the bookable list's counts follow the holds too
        bookable = {}
        token = ""
        for _ in range(50):
            st, page, _ = self.get(f"/reservations?pageSize=100&pageToken={token}")
            self.assertEqual(st, 200, page)
            for perf in page.get("performances", []):
                bookable[perf["performanceId"]] = perf
            token = page.get("nextPageToken", "")
            if not token:
                break
        grades = {g["grade"]: g for s in bookable[self.perf["performanceId"]]["schedules"]
                  if s["scheduleId"] == sid for g in s["grades"]}
        self.assertEqual((grades["VIP"]["held"], grades["VIP"]["sold"]), (1, 1), grades)

    def test_a_private_answer_is_never_served_to_another_caller(self):
        pt = self.pt["accessToken"]
        p = pending_show(pt, title="Secret draft")
        pid = p["performanceId"]
        path = f"/performances/{pid}"
        st, mine, h = self.get(path, token=pt)
        self.assertEqual((st, mine["title"]), (200, "Secret draft"))
        tag = h["ETag"]
        for _ in range(2):  # twice: the second read would be the cached one
            # another planner, a user, anonymous: the draft does not exist for them
            self.assertEqual(self.get(path, token=self.ot["accessToken"])[0], 404)
            self.assertEqual(self.get(path, token=mint(P)[1])[0], 404)
            self.assertEqual(self.get(path)[0], 404)
            # knowing the owner's ETag does not help: no 304, no body
            st, body, _ = self.get(path, token=self.ot["accessToken"], inm=tag)
            self.assertEqual(st, 404, body)
            self.assertEqual(self.get(path, inm=tag)[0], 404)
        # a token claiming the owner's id without the platform's signature
        forged = P.token({"sub": self.planner["userId"], "role": "PLANNER"}, header={"kid": "nope"})
        self.assertEqual(self.get(path, token=forged)[0], 401)
        # the owner's list shows the draft; the same query by others does not
        q = f"/performances?plannerId={self.planner['userId']}&pageSize=100"
        self.assertIn(pid, [x["performanceId"] for x in self.get(q, token=pt)[1]["performances"]])
        for tok in (self.ot["accessToken"], None):
            got = self.get(q, token=tok)[1].get("performances", [])
            self.assertNotIn(pid, [x["performanceId"] for x in got])
        # rejected with a reason: the owner and admins read it, the reason is theirs alone
        self.assertEqual(P.call("POST", f"{path}/reject", {"reason": "needs a venue"}, token=self.at)[0], 200)
        self.assertEqual(self.get(path, token=pt)[1]["rejectReason"], "needs a venue")
        self.assertEqual(self.get(path, token=self.at)[1]["rejectReason"], "needs a venue")
        self.assertEqual(self.get(path, token=self.ot["accessToken"])[0], 404)

    def test_a_members_profile_is_kept_per_caller_and_cleared_by_its_writes(self):
        """GetMember is cached per verified caller (proto/member.proto): a
        repeat is the gateway's, nobody else ever gets it, and the member's
        own edit or withdrawal shows at once to every caller."""
        get_member = "/sb.member.MemberService/GetMember"
        m, t = P.user()
        path, tok = f"/members/{m['userId']}", t["accessToken"]
        g0 = gateway_counts(get_member)
        st, mine, h = self.get(path, token=tok)
        self.assertEqual((st, h.get("Cache-Control"), h.get("Vary")), (200, "private, no-cache", "Authorization"))
        st, again, _ = self.get(path, token=tok)
        self.assertEqual((st, again), (200, mine))
        self.assertEqual(self.get(path, token=tok, inm=h["ETag"])[0], 304)
        g1 = gateway_counts(get_member)
        self.assertGreaterEqual(g1[0] - g0[0], 1, "a repeat within the max age is a gateway hit")
        # another member, even with the owner's ETag, twice (the second would be a cached one)
        _, other = P.user()
        for _ in range(2):
            st, body, _ = self.get(path, token=other["accessToken"])
            self.assertEqual(st, 403, body)
            st, body, _ = self.get(path, token=other["accessToken"], inm=h["ETag"])
            self.assertEqual(st, 403, body)
            self.assertEqual(self.get(path)[0], 401)
        self.assertEqual(self.get(path, token=self.at)[1]["name"], mine["name"])  # the admin's own entry
        # the member's edit: both the member's and the admin's copies go at once
        st, upd, _ = P.call("PUT", path, {"name": "Renamed Member"}, token=tok)
        self.assertEqual((st, upd.get("name")), (200, "Renamed Member"), upd)
        self.assertEqual(self.get(path, token=tok)[1]["name"], "Renamed Member")
        self.assertEqual(self.get(path, token=self.at)[1]["name"], "Renamed Member")
        # withdrawn: the admin's cached copy is not served any more
        st, body, _ = P.call("DELETE", path, token=tok)
        self.assertEqual(st, 200, body)
        st, body, _ = self.get(path, token=self.at)
        self.assertEqual(st, 404, body)

    def test_the_gateway_answers_repeats_without_the_service(self):
        _, sids = approved_show(P, self.pt["accessToken"], self.at)
        sid = sids[0]
        g0, s0 = gateway_counts(SEAT_MAP), service_counts(SEAT_MAP)
        t0 = time.monotonic()
        maps = [seat_status(P, sid) for _ in range(20)]
        elapsed = time.monotonic() - t0
        g1, s1 = gateway_counts(SEAT_MAP), service_counts(SEAT_MAP)
        self.assertTrue(all(m == maps[0] for m in maps), "nothing changed: one answer")
        g_hits, g_misses = g1[0] - g0[0], g1[1] - g0[1]
        reached = (s1[0] - s0[0]) + (s1[1] - s0[1])
        self.assertEqual(g_hits + g_misses, 20, (g0, g1))
        self.assertEqual(reached, g_misses, "the service is asked exactly when the gateway misses")
        # a miss at most once per max age (nothing clears it meanwhile)
        self.assertLessEqual(g_misses, 1 + int(elapsed / MAX_AGE_S) + 1, (g_misses, elapsed))
        # a hold through this gateway clears its copy at once
        _, tok = mint(P)
        st, r, _ = P.call("POST", "/reservations", {"scheduleId": sid, "seatIds": ["R-A-1"]}, token=tok)
        self.assertEqual(st, 201, r)
        self.assertEqual(seat_status(P, sid)["R-A-1"], "HELD")

    def test_concurrent_misses_cost_the_service_one_call(self):
        """Readers that miss together (a cleared or expired hot seat map) wait
        for the first one's call instead of each calling the service."""
        _, sids = approved_show(P, self.pt["accessToken"], self.at)
        sid = sids[0]
        time.sleep(MAX_AGE_S + 0.1)  # what approved_show's reads left has expired, here and in the service
        host, port = P.base.split("//")[1].split(":")
        socks = [socket.create_connection((host, int(port)), timeout=30) for _ in range(48)]
        req = f"GET /schedules/{sid}/seats HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        g0, s0 = gateway_counts(SEAT_MAP), service_counts(SEAT_MAP)
        c0 = metric(f"{P.base}/metrics", "sb_gateway_cache_coalesced_total")
        t0 = time.monotonic()
        for s in socks:  # all sent before any answer is read
            s.sendall(req)
        bodies = []
        for s in socks:
            f = s.makefile("rb")
            status = f.readline()
            length = 0
            while True:
                line = f.readline().strip()
                if not line:
                    break
                k, _, v = line.decode().partition(":")
                if k.lower() == "content-length":
                    length = int(v)
            bodies.append((status.split()[1], f.read(length)))
            f.close()
            s.close()
        elapsed = time.monotonic() - t0
        self.assertEqual({b[0] for b in bodies}, {b"200"})
        self.assertEqual(len({b[1] for b in bodies}), 1, "every reader got the same map")
        g1, s1 = gateway_counts(SEAT_MAP), service_counts(SEAT_MAP)
        waited = metric(f"{P.base}/metrics", "sb_gateway_cache_coalesced_total") - c0
        g_hits, g_misses = g1[0] - g0[0], g1[1] - g0[1]
        reached = (s1[0] - s0[0]) + (s1[1] - s0[1])
        self.assertEqual(g_hits + g_misses, 48)
        # one call per max age, however many readers missed at once
        self.assertLessEqual(reached, 1 + int(elapsed / MAX_AGE_S), (reached, g_misses, waited, elapsed))
        self.assertEqual(g_misses, reached + waited, "a miss either called or waited on the one that did")
        self.assertGreater(waited, 0, "48 readers sent at once: some came while the first one's call ran")

    def test_a_leader_that_goes_away_does_not_strand_its_waiters(self):
        """The first miss leads the fill and the misses behind it wait for its
        answer. The leader's client goes away while the call runs: the
        waiters still get the map, nothing stays suspended, and later reads
        are answered. (libmicrohttpd 0.9.75 sometimes ends a resumed leader
        without handing it its answer, termination WITH_ERROR; then a waiter
        takes the fill over, sb_gateway_cache_fills_abandoned_total. This
        close does not trigger that reliably: bench/fill_cycles.py does, about
        once in 5 cycles, and showed the stranded fill before the fix.)"""
        _, sids = approved_show(P, self.pt["accessToken"], self.at)
        sid = sids[0]
        time.sleep(MAX_AGE_S + 0.1)  # what approved_show's reads left has expired
        host, port = P.base.split("//")[1].split(":")
        req = f"GET /schedules/{sid}/seats HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        base = f"{P.base}/metrics"
        a0 = metric(base, "sb_gateway_cache_fills_abandoned_total")
        svc = P.proc("reservation").pid
        os.kill(svc, signal.SIGSTOP)  # the leader's call waits until SIGCONT
        try:
            leader = socket.create_connection((host, int(port)), timeout=30)
            leader.sendall(req)
            wait_for(lambda: metric(base, "sb_gateway_suspended_connections") >= 1, 10, "the leader's call")
            waiters = [socket.create_connection((host, int(port)), timeout=30) for _ in range(8)]
            for w in waiters:
                w.sendall(req)
            wait_for(lambda: metric(base, "sb_gateway_suspended_connections") >= 9, 10, "8 readers waiting")
            # the leader's client goes away
            leader.close()
        finally:
            os.kill(svc, signal.SIGCONT)
        for w in waiters:
            f = w.makefile("rb")
            status = f.readline()
            self.assertEqual(status.split()[1], b"200", status)
            f.close()
            w.close()
        self.assertLessEqual(metric(base, "sb_gateway_cache_fills_abandoned_total") - a0, 1)
        self.assertEqual(metric(base, "sb_gateway_suspended_connections"), 0)
        self.assertEqual(seat_status(P, sid)["R-A-2"], "AVAILABLE")  # a later read is answered too

    def test_caches_in_a_row_never_add_up_their_ages(self):
        """A change made behind every cache's back (another replica, a job) is
        seen through the gateway within one max age of the service's fill,
        even when the gateway filled its copy from the service's cached
        answer half a max age later (without the service's remaining age,
        SB_MD_CACHE_TTL, the gateway would keep it a whole max age more)."""
        stub = attack_matrix.resv_grpc.ReservationServiceStub(T.channel("reservation"))
        for attempt in range(3):
            _, sids = approved_show(P, self.pt["accessToken"], self.at)
            sid = sids[0]
            time.sleep(MAX_AGE_S + 0.1)  # the copies approved_show's reads left have expired
            # the service's cache filled by a direct call (no gateway involved)
            stub.GetSeatMap(attack_matrix.resv_pb2.GetSeatMapRequest(schedule_id=sid), timeout=10)
            primed = time.monotonic()
            time.sleep(MAX_AGE_S / 2)
            before = service_counts(SEAT_MAP)
            self.assertEqual(seat_status(P, sid)["R-A-2"], "AVAILABLE")
            after = service_counts(SEAT_MAP)
            if after[0] - before[0] == 1 and time.monotonic() < primed + MAX_AGE_S * 0.9:
                break  # the gateway's copy came out of the service's cache
            # the machine was too slow for the service's entry to still be there: again
        else:
            self.skipTest("the gateway never filled from the service's cached answer (machine too slow)")
        psql(f"UPDATE seats SET status = 'SOLD', reservation_id = '{uuid.uuid4()}'"
             f" WHERE schedule_id = '{sid}' AND seat_id = 'R-A-2'")
        # every read sent once the service's entry has expired (plus the
        # hop's delay) shows the change
        bound = primed + MAX_AGE_S + 0.3
        stale_late = []
        while time.monotonic() < primed + MAX_AGE_S * 1.8:
            sent = time.monotonic()
            status = seat_status(P, sid)["R-A-2"]
            if sent >= bound and status != "SOLD":
                stale_late.append(round(sent - primed, 3))
            time.sleep(0.02)
        self.assertEqual(stale_late, [], "reads sent this long after the service's fill still showed the seat free")
        self.assertEqual(seat_status(P, sid)["R-A-2"], "SOLD")


if __name__ == "__main__":
    unittest.main(verbosity=2)
