#!/usr/bin/env python3
"""The gateway's event loops (issue 13): no thread per connection, no
blocking call on a loop thread. Member and auth behind the real gateway,
which runs 2 event loops (GATEWAY_THREADS=2) so that anything holding a loop
thread would show, without the local denylist (every token check is a
blocking job asking Redis, then the call):

- pipelined requests on one connection are answered in order, and the
  connection stays open for more (keep-alive);
- 64 calls waiting on a stopped member service (SIGSTOP: connected, never
  answering) hold no thread: other connections are answered meanwhile,
  /healthz and a route to the auth service, and the 64 get their answers
  when member goes on (SIGCONT);
- clients that go away mid-call (a close, a reset) crash and leak nothing
  (a leak or a sanitizer report fails the run at the gateway's exit), and
  the gateway goes on serving;
- a backend that is down answers 503 with the JSON error body at once while
  the routes of other backends keep working.

Outcomes only, no timings."""
import json
import os
import select
import signal
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from sbplatform import GATEWAY_PORT, Platform  # noqa: E402

P = None
MEMBER = None
TOKEN = None


def setUpModule():
    global P, MEMBER, TOKEN
    # REVOCATION_CACHE_MAX=0: no local denylist, so every token check asks
    # Redis and runs as a blocking job (the other e2e tests cover the local one);
    # RPC_CACHE_MAX_ENTRIES=0: no cached reads, so every GET /members/{id} is a
    # call to member (GetMember is cached per caller; e2e/test_cache covers that)
    P = Platform(["member", "auth"], env={"GATEWAY_THREADS": "2", "GATEWAY_TIMEOUT_MS": "60000",
                                          "REVOCATION_CACHE_MAX": "0",
                                          "RPC_CACHE_MAX_ENTRIES": "0"}).__enter__()
    MEMBER, tokens = P.user()
    TOKEN = tokens["accessToken"]


def tearDownModule():
    P.__exit__(None, None, None)


def request(path, token=None, method="GET"):
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"{method} {path} HTTP/1.1\r\nHost: gw\r\n{auth}X-Forwarded-For: {P.client_ip}\r\n\r\n").encode()


def connect():
    s = socket.create_connection(("127.0.0.1", GATEWAY_PORT), timeout=60)
    return s, s.makefile("rb")


def read_response(f):
    """(status, headers, body) of the next response on f (Content-Length bodies)."""
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed before a response")
    status = int(line.split()[1])
    headers = {}
    while True:
        h = f.readline().decode().rstrip("\r\n")
        if not h:
            break
        k, v = h.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = f.read(int(headers.get("content-length", "0")))
    return status, headers, body


class Member:
    """member stopped (SIGSTOP) in a with block, going on (SIGCONT) after."""

    def __enter__(self):
        P.proc("member").send_signal(signal.SIGSTOP)

    def __exit__(self, *exc):
        P.proc("member").send_signal(signal.SIGCONT)
        return False


def pending(socks):
    """The sockets of socks that have received nothing yet."""
    readable, _, _ = select.select(socks, [], [], 0)
    return [s for s in socks if s not in readable]


class GatewayLoop(unittest.TestCase):
    def test_pipelined_requests_answered_in_order(self):
        s, f = connect()
        with s, f:
            member = f"/members/{MEMBER['userId']}"
            # the first waits on a backend call, the second and third do not
            s.sendall(request(member, TOKEN) + request("/healthz") + request("/no/such/path") +
                      request("/.well-known/jwks.json"))
            st, _, body = read_response(f)
            self.assertEqual(st, 200, body)
            self.assertEqual(json.loads(body)["userId"], MEMBER["userId"])
            st, _, body = read_response(f)
            self.assertEqual((st, json.loads(body)), (200, {"status": "ok"}))
            st, _, body = read_response(f)
            self.assertEqual(st, 404, body)
            self.assertEqual(json.loads(body)["error"]["code"], "NOT_FOUND")
            st, _, body = read_response(f)
            self.assertEqual(st, 200, body)
            self.assertIn("keys", json.loads(body))
            # kept alive: the same connection serves another request
            s.sendall(request(member, TOKEN))
            st, headers, body = read_response(f)
            self.assertEqual(st, 200, body)
            self.assertNotEqual(headers.get("connection", "").lower(), "close")
            # headers of 8 KB fit in a connection's memory (GATEWAY_CONNECTION_MEMORY)
            s.sendall(request("/healthz").replace(b"\r\n\r\n", b"\r\nX-Pad: " + b"p" * 8000 + b"\r\n\r\n"))
            st, _, body = read_response(f)
            self.assertEqual(st, 200, body)

    def test_waiting_calls_hold_no_thread(self):
        member = f"/members/{MEMBER['userId']}"
        conns = []
        try:
            with Member():
                for _ in range(64):
                    s, f = connect()
                    conns.append((s, f))
                    s.sendall(request(member, TOKEN))
                # 64 calls wait on member with 2 event loops; other connections are served
                for path in ("/healthz", "/.well-known/jwks.json", "/openapi.json"):
                    st, body, _ = P.call("GET", path)
                    self.assertEqual(st, 200, (path, body))
                st, body, _ = P.call("GET", member, token="not-a-token")
                self.assertEqual(st, 401, body)
                self.assertEqual(len(pending([s for s, _ in conns])), 64, "a call was answered with member stopped")
            for s, f in conns:
                st, _, body = read_response(f)
                self.assertEqual(st, 200, body)
                self.assertEqual(json.loads(body)["userId"], MEMBER["userId"])
        finally:
            for s, f in conns:
                f.close()
                s.close()

    def test_clients_gone_mid_call(self):
        member = f"/members/{MEMBER['userId']}"
        with Member():
            for i in range(32):
                s = socket.create_connection(("127.0.0.1", GATEWAY_PORT), timeout=10)
                s.sendall(request(member, TOKEN))
                if i % 2:  # a reset rather than a close
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            st, body, _ = P.call("GET", "/healthz")
            self.assertEqual(st, 200, body)
        # the answers go nowhere; the gateway goes on
        for _ in range(3):
            st, body, _ = P.call("GET", member, token=TOKEN)
            self.assertEqual(st, 200, body)
        self.assertIsNone(P.proc("gateway").poll(), "the gateway exited")

    def test_backend_down_503_others_work(self):
        P.kill("member")
        try:
            st, body, _ = P.call("GET", f"/members/{MEMBER['userId']}", token=TOKEN)
            self.assertEqual(st, 503, body)
            self.assertEqual(body["error"]["code"], "UNAVAILABLE")
            self.assertIn("member service is unavailable", body["error"]["message"])
            st, body, _ = P.call("GET", "/.well-known/jwks.json")
            self.assertEqual(st, 200, body)
            st, body, _ = P.call("GET", "/healthz")
            self.assertEqual(st, 200, body)
        finally:
            P.start_service("member")
            P.wait_ready()
            # and the gateway's channel has reconnected (its backoff) before the next test
            deadline = time.time() + 30
            while P.call("GET", f"/members/{MEMBER['userId']}", token=TOKEN)[0] != 200 and time.time() < deadline:
                time.sleep(0.1)


if __name__ == "__main__":
    unittest.main()
