#!/usr/bin/env python3
"""The gateway answers every ready request when exactly 128 connections of
one event loop become ready together (gateway/epoll_wait.c).

libmicrohttpd asks epoll for at most 128 events at a time and, when a call
fills all 128, asks again with the timeout it computed before the first call
(up to the 30 s idle timeout); with nothing else ready it sleeps there with
the 128 requests it has just collected, unanswered until the idle timeout
closes them. That was the "kind 1" stall of docs/benchmarks.md. The gateway
replaces epoll_wait so that the call after a full one does not wait.

Made deterministic here: one event loop (GATEWAY_THREADS=1), 128 idle
keep-alive connections, the gateway stopped (SIGSTOP) while one request is
written on each, so that all 128 are ready when it goes on (SIGCONT): its
next epoll_wait returns exactly 128. Every request must be answered; before
the fix none were, for 30 s. The 20 s allowed is a liveness bound, not a
timing (the answers come in milliseconds)."""
import os
import select
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from sbplatform import GATEWAY_PORT, Platform  # noqa: E402

P = None
N = 128  # libmicrohttpd's MAX_EVENTS


def setUpModule():
    global P
    P = Platform(["member", "auth"], env={"GATEWAY_THREADS": "1"}).__enter__()


def tearDownModule():
    P.__exit__(None, None, None)


REQUEST = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"


def answered(buf):
    """The number of whole responses (headers + Content-Length body) in buf."""
    n = 0
    while True:
        head, sep, rest = buf.partition(b"\r\n\r\n")
        if not sep:
            return n
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
        if len(rest) < length:
            return n
        n += 1
        buf = rest[length:]


def stopped(pid):
    """True once every thread of pid is stopped (state T in /proc)."""
    tasks = os.listdir(f"/proc/{pid}/task")
    for t in tasks:
        with open(f"/proc/{pid}/task/{t}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] != "T":
                return False
    return True


def collect(socks, want, seconds):
    """Reads from socks until each holds `want` whole responses or `seconds`
    pass; returns how many sockets got there."""
    bufs = {s: b"" for s in socks}
    pending = set(socks)
    deadline = time.monotonic() + seconds
    while pending and time.monotonic() < deadline:
        ready, _, _ = select.select(list(pending), [], [], 0.5)
        for s in ready:
            chunk = s.recv(65536)
            if not chunk:
                pending.discard(s)  # closed: it never gets there
                continue
            bufs[s] += chunk
            if answered(bufs[s]) >= want:
                pending.discard(s)
    return sum(1 for s in socks if answered(bufs[s]) >= want)


class FullEpollBatch(unittest.TestCase):
    def test_128_requests_ready_at_once_are_all_answered(self):
        gw = P.proc("gateway").pid
        socks = [socket.create_connection(("127.0.0.1", GATEWAY_PORT), timeout=10) for _ in range(N)]
        try:
            for s in socks:
                s.sendall(REQUEST)
            self.assertEqual(collect(socks, 1, 20), N, "the first request on each connection")
            time.sleep(0.5)  # the loop takes the write-ready edges of those answers and sleeps
            os.kill(gw, signal.SIGSTOP)
            try:
                deadline = time.monotonic() + 10
                while not stopped(gw) and time.monotonic() < deadline:
                    time.sleep(0.01)
                self.assertTrue(stopped(gw), "the gateway did not stop")
                for s in socks:
                    s.sendall(REQUEST)
                time.sleep(0.2)
            finally:
                os.kill(gw, signal.SIGCONT)
            self.assertEqual(collect(socks, 1, 20), N, "requests left unanswered after a full epoll batch")
            # and the gateway goes on serving
            self.assertEqual(P.call("GET", "/healthz")[0], 200)
        finally:
            for s in socks:
                s.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
