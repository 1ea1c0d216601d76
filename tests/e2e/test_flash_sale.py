#!/usr/bin/env python3
"""The flash-sale benchmark's own correctness, with tiny numbers (issue 10):
bench/flash_sale.c (build/bench/bench-flash-sale) and the pgbench script run
against the real platform, and each must report no seat held twice, every
seat of the schedule held (demand exceeds supply), the database agreeing with
the answers, no error, and the outbox drained. Speed is not asserted: the
benchmark itself is `make bench-flash` (bench/flash_sale.py), never a test.
This keeps the benchmark from rotting as the reservation service changes."""
import argparse
import os
import shutil
import sys
import tempfile
import unittest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import flash_sale  # noqa: E402  bench/flash_sale.py
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, Platform  # noqa: E402

ARGS = argparse.Namespace(buyers=60, seats=40, quantity=2)
CELLS = [("rest", "seats"), ("rest", "best"), ("grpc", "seats"), ("grpc", "best")]


class FlashSaleSmoke(unittest.TestCase):
    def test_every_mode_holds_each_seat_once(self):
        env = {"HOLD_TTL_S": "3600"}
        with Platform(["member", "auth", "performance", "reservation"], env=env) as p, \
                tempfile.NamedTemporaryFile("w", prefix="flash-users-", suffix=".txt") as users:
            _, planner = p.user("PLANNER")
            admin = p.login(ADMIN_LOGIN, ADMIN_PASSWORD)
            flash_sale.make_members(ARGS.buyers, users.name)
            sids = flash_sale.sell(p, planner, admin, ARGS.seats, len(CELLS) + 2)
            for sid, (transport, mode) in zip(sids, CELLS):
                with self.subTest(transport=transport, mode=mode):
                    r = flash_sale.run_cell(p, ARGS, sid, transport, mode, 16, users.name)
                    self.assertEqual(r["held_twice_db"], 0, r)
                    self.assertEqual(r["held_twice_answers"], 0, r)
                    self.assertEqual(r["errors"], 0, r)
                    # best available sells out; chosen seats sell every block some buyer
                    # asked for (seats_expected: the program counts them)
                    want = ARGS.seats if mode == "best" else r["seats_expected"]
                    self.assertGreater(want, ARGS.seats // 2, r)
                    self.assertEqual(r["seats_expected"], want, r)
                    self.assertEqual(r["seats_held_db"], want, r)
                    self.assertEqual(r["seats_granted"], want, r)
                    self.assertEqual(r["holds"], want // ARGS.quantity, r)
                    self.assertEqual(r["refused"], ARGS.buyers - r["holds"], r)
                    self.assertGreaterEqual(r["outbox_drain_s"], 0, r)
                    self.assertTrue(r["ok"], r)
            if shutil.which("pgbench"):
                for sid, mode in zip(sids[len(CELLS):], ("seats", "best")):
                    with self.subTest(pgbench=mode):
                        r = flash_sale.run_pgbench(p, ARGS, sid, mode, clients=8)
                        self.assertIsNotNone(r)
                        self.assertEqual(r["check"]["held_twice_db"], 0, r)
                        if mode == "best":
                            self.assertEqual(r["check"]["seats_held_db"], ARGS.seats, r)
                        else:  # the blocks pgbench's random buyers asked for
                            self.assertGreater(r["check"]["seats_held_db"], ARGS.seats // 2, r)
                        self.assertTrue(r["ok"], r)


if __name__ == "__main__":
    unittest.main()
