"""Load for the fault tests: client threads, each on its own kept-alive
HTTP/1.1 connection to the gateway, sending one request after another and
recording what became of each, so a test can say which requests were
answered, which were never sent, and which were cut off.

    load = Load(port, "GET", "/members/…", {"Authorization": "Bearer …"}, threads=32).start()
    (body=: a JSON body sent with each request)
    ...
    load.stop()
    for o in load.outcomes: o.kind, o.status, o.body, o.sent, o.done

Kinds:
  "answered"  a complete response (o.status, o.body parsed as JSON or None,
              o.close: the response said Connection: close)
  "refused"   the connection could not be made: nothing was sent
  "unsent"    the request could not be written (the server had closed the
              connection before it): nothing reached the server
  "cut"       the request was sent and no complete response came back: the
              failure a graceful drain must never produce
"""
import http.client
import json
import threading
import time


class Outcome:
    __slots__ = ("kind", "status", "body", "close", "sent", "done", "error")

    def __init__(self, kind, sent, status=None, body=None, close=False, error=None):
        self.kind, self.sent, self.done = kind, sent, time.monotonic()
        self.status, self.body, self.close, self.error = status, body, close, error

    def __repr__(self):
        return f"<{self.kind} {self.status} {self.error or ''} after {self.done - self.sent:.3f}s>"


class Load:
    def __init__(self, port, method, path, headers=None, threads=32, pause=0.0, timeout=30, body=None):
        self.port, self.method, self.path = port, method, path
        self.headers = dict(headers or {})
        self.body = json.dumps(body).encode() if body is not None else None
        if self.body is not None:
            self.headers.setdefault("Content-Type", "application/json")
        self.n, self.pause, self.timeout = threads, pause, timeout
        self.outcomes = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []

    def start(self):
        for _ in range(self.n):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout + 5)
        return self

    def _record(self, o):
        with self._lock:
            self.outcomes.append(o)

    def answered(self, since=None):
        with self._lock:
            return [o for o in self.outcomes if o.kind == "answered" and (since is None or o.sent >= since)]

    def _run(self):
        conn = None
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                t0 = time.monotonic()
                try:
                    conn.connect()
                except OSError as e:
                    self._record(Outcome("refused", t0, error=repr(e)))
                    conn = None
                    time.sleep(0.02)
                    continue
            t0 = time.monotonic()
            try:
                conn.request(self.method, self.path, body=self.body, headers=self.headers)
            except OSError as e:
                self._record(Outcome("unsent", t0, error=repr(e)))
                conn.close()
                conn = None
                continue
            try:
                r = conn.getresponse()
                payload = r.read()
            except (OSError, http.client.HTTPException) as e:
                self._record(Outcome("cut", t0, error=repr(e)))
                conn.close()
                conn = None
                continue
            try:
                body = json.loads(payload) if payload else None
            except ValueError:
                body = None
            close = (r.getheader("Connection") or "").lower() == "close"
            self._record(Outcome("answered", t0, status=r.status, body=body, close=close))
            if r.will_close:
                conn.close()
                conn = None
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()
