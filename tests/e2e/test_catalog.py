#!/usr/bin/env python3
"""The performance catalog through the gateway (issue 4): planners register,
admins approve or reject, approval makes seats bookable (the reservation
service builds its seat maps from Kafka events), planners see their sales.

Run by CTest with the real member, auth, performance, reservation and gateway
binaries and the real PostgreSQL/Redis/Kafka; see sbplatform.py."""
import datetime as dt
import os
import secrets
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, Platform  # noqa: E402

P = None
ADMIN = None


def setUpModule():
    global P, ADMIN
    P = Platform().__enter__()  # every service, the skeletons too
    try:
        ADMIN = P.login(ADMIN_LOGIN, ADMIN_PASSWORD)
    except BaseException:
        P.__exit__(None, None, None)  # tearDownModule does not run: stop them here
        raise


def tearDownModule():
    P.__exit__(None, None, None)


def future(days, hours=0):
    t = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days, hours=hours)
    return t.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def show(**over):
    body = {"title": f"Show {secrets.token_hex(3)}", "description": "e2e", "venue": "Hall A",
            "category": over.pop("category", "MUSICAL"), "runningMinutes": 120,
            "schedules": [{"startsAt": future(10)}, {"startsAt": future(11)}],
            "grades": [{"grade": "VIP", "price": "150000", "seatCount": 30}, {"grade": "R", "price": 90000, "seatCount": 45}]}
    body.update(over)
    return body


class Catalog(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.planner, cls.pt = P.user("PLANNER")
        cls.other, cls.ot = P.user("PLANNER")
        cls.user, cls.ut = P.user("USER")

    def create(self, token=None, **over):
        st, p, _ = P.call("POST", "/performances", show(**over), token=token or self.pt["accessToken"])
        self.assertEqual(st, 201, p)
        return p

    def approve(self, pid):
        st, p, _ = P.call("POST", f"/performances/{pid}/approve", {"reason": "reviewed"}, token=ADMIN["accessToken"])
        self.assertEqual(st, 200, p)
        self.assertEqual(p["status"], "APPROVED")
        return p

    def wait_seatmap(self, sid, want=lambda m: True, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st, m, _ = P.call("GET", f"/schedules/{sid}/seats")
            if st == 200 and want(m):
                return m
            time.sleep(0.05)
        self.fail(f"seat map of {sid} not as expected after {timeout}s: {st} {m}")

    def bookable_ids(self, category=None):
        ids, token = [], ""
        for _ in range(100):
            q = f"/reservations?pageSize=50&pageToken={token}" + (f"&category={category}" if category else "")
            st, body, _ = P.call("GET", q)
            self.assertEqual(st, 200, body)
            ids += [p["performanceId"] for p in body["performances"]]
            token = body.get("nextPageToken", "")
            if not token:
                return ids
        self.fail("bookable list does not end")

    # ---- roles ----
    def test_roles(self):
        st, body, _ = P.call("POST", "/performances", show(), token=self.ut["accessToken"])
        self.assertEqual(st, 403, body)
        self.assertEqual(body["error"]["code"], "PERMISSION_DENIED")
        st, body, _ = P.call("POST", "/performances", show())
        self.assertEqual(st, 401, body)
        p = self.create()
        self.assertEqual(p["status"], "PENDING_APPROVAL")
        self.assertEqual(p["plannerId"], self.planner["userId"])
        self.assertEqual(len(p["schedules"]), 2)
        for s in p["schedules"]:
            uuid.UUID(s["scheduleId"])
        pid = p["performanceId"]
        st, body, _ = P.call("PUT", f"/performances/{pid}", {"title": "Hijacked"}, token=self.ot["accessToken"])
        self.assertEqual(st, 403, body)
        st, body, _ = P.call("POST", f"/performances/{pid}/approve", {"reason": "reviewed"}, token=self.pt["accessToken"])
        self.assertEqual(st, 403, body)
        st, body, _ = P.call("POST", f"/performances/{pid}/cancel", {}, token=self.ot["accessToken"])
        self.assertEqual(st, 403, body)
        # pending is visible to its planner and admins only
        self.assertEqual(P.call("GET", f"/performances/{pid}", token=self.pt["accessToken"])[0], 200)
        self.assertEqual(P.call("GET", f"/performances/{pid}", token=ADMIN["accessToken"])[0], 200)
        self.assertEqual(P.call("GET", f"/performances/{pid}", token=self.ot["accessToken"])[0], 404)
        self.assertEqual(P.call("GET", f"/performances/{pid}")[0], 404)
        # the title is unchanged
        st, body, _ = P.call("GET", f"/performances/{pid}", token=self.pt["accessToken"])
        self.assertEqual(body["title"], p["title"])

    # ---- validation ----
    def test_invalid_input_names_the_field(self):
        past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        cases = [
            ({"title": ""}, "title"),
            ({"title": "x" * 201}, "title"),
            ({"schedules": []}, "schedules"),
            ({"schedules": [{"startsAt": past}]}, "schedules[0].startsAt"),
            ({"schedules": [{"startsAt": "next tuesday"}]}, "schedules[0].startsAt"),
            ({"grades": []}, "grades"),
            ({"grades": [{"grade": "R", "price": -1, "seatCount": 10}]}, "grades[0].price"),
            ({"grades": [{"grade": "R", "price": 1000, "seatCount": 0}]}, "grades[0].seatCount"),
            ({"grades": [{"grade": "R", "price": 1000, "seatCount": 10**6}]}, "grades[0].seatCount"),
            ({"runningMinutes": 0}, "runningMinutes"),
            ({"grades": [{"grade": "R", "price": "lots", "seatCount": 1}]}, "price"),
        ]
        for over, field in cases:
            with self.subTest(field=field, over=over):
                st, body, _ = P.call("POST", "/performances", show(**over), token=self.pt["accessToken"])
                self.assertEqual(st, 400, body)
                self.assertEqual(body["error"]["code"], "INVALID_ARGUMENT")
                self.assertIn(field, body["error"]["message"])

    # ---- approval -> bookable ----
    def test_unapproved_and_rejected_are_not_bookable_approved_is(self):
        cat = f"E2E{secrets.token_hex(3).upper()}"
        pending = self.create(category=cat)
        rejected = self.create(category=cat)
        st, body, _ = P.call("POST", f"/performances/{rejected['performanceId']}/reject", {}, token=ADMIN["accessToken"])
        self.assertEqual(st, 400, body)  # a reason is required
        st, body, _ = P.call("POST", f"/performances/{rejected['performanceId']}/reject", {"reason": "incomplete"},
                             token=ADMIN["accessToken"])
        self.assertEqual(st, 200, body)
        self.assertEqual(body["status"], "REJECTED")
        approved = self.create(category=cat)
        self.approve(approved["performanceId"])
        sid = approved["schedules"][0]["scheduleId"]
        m = self.wait_seatmap(sid)
        self.assertEqual(len(m["seats"]), 75)
        self.assertEqual(m["performanceId"], approved["performanceId"])
        by_grade = {}
        for s in m["seats"]:
            self.assertEqual(s["status"], "AVAILABLE")
            by_grade.setdefault(s["grade"], []).append(s)
        self.assertEqual(len(by_grade["VIP"]), 30)
        self.assertEqual(len(by_grade["R"]), 45)
        self.assertEqual({s["price"] for s in by_grade["VIP"]}, {"150000"})
        self.assertEqual({s["price"] for s in by_grade["R"]}, {"90000"})
        self.assertEqual(len({s["seatId"] for s in m["seats"]}), 75)
        ids = self.bookable_ids(cat)
        self.assertEqual(ids, [approved["performanceId"]])
        for p in (pending, rejected):
            self.assertEqual(P.call("GET", f"/schedules/{p['schedules'][0]['scheduleId']}/seats")[0], 404)
        st, body, _ = P.call("GET", f"/reservations?category={cat}")
        perf = body["performances"][0]
        self.assertEqual(len(perf["schedules"]), 2)
        for sch in perf["schedules"]:
            for g in sch["grades"]:
                self.assertEqual(g["free"], g["total"])

    # ---- planner view ----
    def test_planner_view(self):
        p = self.create()
        pid = p["performanceId"]
        self.approve(pid)
        self.wait_seatmap(p["schedules"][1]["scheduleId"])
        st, view, _ = P.call("GET", f"/performances/{pid}/reservations", token=self.pt["accessToken"])
        self.assertEqual(st, 200, view)
        self.assertEqual(len(view["schedules"]), 2)
        for sch in view["schedules"]:
            g = {x["grade"]: x for x in sch["grades"]}
            self.assertEqual((g["VIP"]["total"], g["VIP"]["free"], g["VIP"]["held"], g["VIP"]["sold"]), (30, 30, 0, 0))
            self.assertEqual((g["R"]["total"], g["R"]["free"]), (45, 45))
        self.assertEqual(P.call("GET", f"/performances/{pid}/reservations", token=ADMIN["accessToken"])[0], 200)
        self.assertEqual(P.call("GET", f"/performances/{pid}/reservations", token=self.ot["accessToken"])[0], 403)
        self.assertEqual(P.call("GET", f"/performances/{pid}/reservations", token=self.ut["accessToken"])[0], 403)

    # ---- changes and cancellation ----
    def test_change_after_approval_and_cancel(self):
        p = self.create()
        pid = p["performanceId"]
        self.approve(pid)
        s0 = p["schedules"][0]
        self.wait_seatmap(s0["scheduleId"])
        new_time = future(12, 3)
        sched = [{"scheduleId": s0["scheduleId"], "startsAt": new_time},
                 {"scheduleId": p["schedules"][1]["scheduleId"], "startsAt": p["schedules"][1]["startsAt"]}]
        st, body, _ = P.call("PUT", f"/performances/{pid}", {"schedules": sched}, token=self.pt["accessToken"])
        self.assertEqual(st, 200, body)
        self.wait_seatmap(s0["scheduleId"], lambda m: m["startsAt"].startswith(new_time[:16]))
        # removing a schedule of an approved performance is refused
        st, body, _ = P.call("PUT", f"/performances/{pid}", {"schedules": sched[:1]}, token=self.pt["accessToken"])
        self.assertEqual(st, 400, body)
        self.assertEqual(body["error"]["code"], "FAILED_PRECONDITION")
        # a price change while nothing is held or sold is allowed and reaches the seat map
        grades = [{"grade": "VIP", "price": 160000, "seatCount": 30}, {"grade": "R", "price": 90000, "seatCount": 45}]
        st, body, _ = P.call("PUT", f"/performances/{pid}", {"grades": grades}, token=self.pt["accessToken"])
        self.assertEqual(st, 200, body)
        self.wait_seatmap(s0["scheduleId"],
                          lambda m: {s["price"] for s in m["seats"] if s["grade"] == "VIP"} == {"160000"})
        st, body, _ = P.call("POST", f"/performances/{pid}/cancel", {"reason": "venue closed"}, token=self.pt["accessToken"])
        self.assertEqual(st, 200, body)
        self.assertEqual(body["status"], "CANCELLED")
        deadline = time.time() + 20
        while time.time() < deadline and P.call("GET", f"/schedules/{s0['scheduleId']}/seats")[0] != 404:
            time.sleep(0.05)
        self.assertEqual(P.call("GET", f"/schedules/{s0['scheduleId']}/seats")[0], 404)
        self.assertNotIn(pid, self.bookable_ids())
        st, body, _ = P.call("POST", f"/performances/{pid}/cancel", {}, token=ADMIN["accessToken"])
        self.assertEqual(st, 400, body)

    def test_price_change_refused_while_seats_are_held(self):
        """The performance service asks the real reservation service before a
        price or seat-count change of an approved grade; a real hold counts."""
        p = self.create()
        pid, sid = p["performanceId"], p["schedules"][0]["scheduleId"]
        self.approve(pid)
        self.wait_seatmap(sid)
        st, body, _ = P.call("POST", "/reservations", {"scheduleId": sid, "seatIds": ["VIP-A-1"]},
                             token=self.ut["accessToken"])
        self.assertEqual(st, 201, body)
        st, view, _ = P.call("GET", f"/performances/{pid}/reservations", token=self.pt["accessToken"])
        vip = [g for g in view["schedules"][0]["grades"] if g["grade"] == "VIP"][0]
        self.assertEqual((vip["held"], vip["free"]), (1, 29))
        grades = [{"grade": "VIP", "price": 99000, "seatCount": 30}, {"grade": "R", "price": 90000, "seatCount": 45}]
        st, body, _ = P.call("PUT", f"/performances/{pid}", {"grades": grades}, token=self.pt["accessToken"])
        self.assertEqual(st, 400, body)
        self.assertEqual(body["error"]["code"], "FAILED_PRECONDITION")
        self.assertIn("VIP", body["error"]["message"])
        # R has nothing held: its price may change
        grades = [{"grade": "VIP", "price": 150000, "seatCount": 30}, {"grade": "R", "price": 95000, "seatCount": 45}]
        st, body, _ = P.call("PUT", f"/performances/{pid}", {"grades": grades}, token=self.pt["accessToken"])
        self.assertEqual(st, 200, body)
        m = self.wait_seatmap(sid, lambda m: {s["price"] for s in m["seats"] if s["grade"] == "R"} == {"95000"})
        self.assertEqual({s["price"] for s in m["seats"] if s["grade"] == "VIP"}, {"150000"})
        self.assertEqual([s["status"] for s in m["seats"] if s["seatId"] == "VIP-A-1"], ["HELD"])

    def test_notification_paths_are_built(self):
        """Notification landed (issue 12, test_notifications.py): its paths
        answer, no longer 501 (payment: test_payments.py)."""
        st, resp, _ = P.call("GET", "/notifications", None, token=self.ut["accessToken"])
        self.assertEqual(st, 200, resp)
        self.assertEqual(resp.get("notifications", []), [])

    # ---- lists ----
    def test_pagination_walks_every_item_once(self):
        planner, pt = P.user("PLANNER")
        made = {self.create(token=pt["accessToken"])["performanceId"] for _ in range(7)}
        seen, token, pages = [], "", 0
        while True:
            st, body, _ = P.call("GET", f"/performances?plannerId={planner['userId']}&pageSize=2&pageToken={token}",
                                 token=pt["accessToken"])
            self.assertEqual(st, 200, body)
            self.assertLessEqual(len(body["performances"]), 2)
            seen += [p["performanceId"] for p in body["performances"]]
            pages += 1
            token = body.get("nextPageToken", "")
            if not token:
                break
            self.assertLess(pages, 10)
        self.assertEqual(len(seen), len(set(seen)))
        self.assertEqual(set(seen), made)
        # others see none of them (all pending)
        st, body, _ = P.call("GET", f"/performances?plannerId={planner['userId']}")
        self.assertEqual(body["performances"], [])
        st, body, _ = P.call("GET", "/performances?pageToken=%%%garbage")
        self.assertEqual(st, 400, body)


if __name__ == "__main__":
    unittest.main(verbosity=2)
