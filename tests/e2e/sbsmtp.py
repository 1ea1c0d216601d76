#!/usr/bin/python3
"""A real local SMTP server that stores what it receives, for `make run` and
the e2e tests: Debian's python3-aiosmtpd (deploy/local/setup.sh installs it),
run as a process of its own under /usr/bin/python3.

    /usr/bin/python3 tests/e2e/sbsmtp.py --port 2525 --dir .cache/run/mail

Each message it accepts is written to DIR/<n>.eml (atomically: written to a
temporary name, then renamed) with two headers in front, X-Sb-Mail-From and
X-Sb-Rcpt-To, the envelope. A message is stored only when its transaction
completes: when the client is gone before the server could say 250 after
DATA, the message is dropped, as RFC 5321 section 4.1.1.4 asks of a relay.

Knobs for fault tests, files in DIR read at every message:
  delay_ms   wait this long after the data arrived before accepting
  reject     a word: recipients containing it are refused (550)

SmtpSink (below) runs it from a test: start(), stop(), mails(), delay()."""
import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from email import message_from_bytes, policy

HERE = os.path.dirname(os.path.abspath(__file__))


def _knob(d, name):
    try:
        with open(os.path.join(d, name)) as f:
            return f.read().strip()
    except OSError:
        return ""


class Store:
    def __init__(self, d):
        self.dir = d
        self.n = len([f for f in os.listdir(d) if f.endswith(".eml")])

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        word = _knob(self.dir, "reject")
        if word and word in address:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        delay = _knob(self.dir, "delay_ms")
        if delay:
            try:
                await asyncio.sleep(int(delay) / 1000)
            except asyncio.CancelledError:  # aiosmtpd cancels the handler when the client goes
                print("sbsmtp: client gone before the message was accepted: dropped", file=sys.stderr,
                      flush=True)
                raise
        if server.transport is None or server.transport.is_closing():
            print("sbsmtp: client gone before the message was accepted: dropped", file=sys.stderr, flush=True)
            return "421 4.4.2 connection lost"
        self.n += 1
        path = os.path.join(self.dir, f"{self.n:06d}.eml")
        head = f"X-Sb-Mail-From: {envelope.mail_from}\r\nX-Sb-Rcpt-To: {', '.join(envelope.rcpt_tos)}\r\n"
        with open(path + ".tmp", "wb") as f:
            f.write(head.encode() + envelope.original_content)
        os.rename(path + ".tmp", path)
        print(f"sbsmtp: stored {path} for {envelope.rcpt_tos}", file=sys.stderr, flush=True)
        return "250 2.0.0 OK stored"


def main():
    from aiosmtpd.controller import Controller
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=2525)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    c = Controller(Store(a.dir), hostname=a.host, port=a.port, decode_data=False, data_size_limit=1 << 20)
    c.start()
    print(f"sbsmtp: listening on {a.host}:{a.port}, storing in {a.dir}", file=sys.stderr, flush=True)
    done = []
    signal.signal(signal.SIGTERM, lambda *_: done.append(1))
    signal.signal(signal.SIGINT, lambda *_: done.append(1))
    while not done:
        time.sleep(0.2)
    c.stop()


class SmtpSink:
    """sbsmtp.py as a child process on `port`, storing in `dir`."""

    def __init__(self, port, d, log_path=None):
        self.port, self.dir = port, d
        os.makedirs(d, exist_ok=True)
        self.log_path = log_path or os.path.join(d, "sbsmtp.log")
        self.proc = None

    @property
    def url(self):
        return f"smtp://127.0.0.1:{self.port}"

    def start(self, timeout=20):
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "sbsmtp.py"),
                                          "--port", str(self.port), "--dir", self.dir], stdout=log, stderr=log)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sbsmtp exited: {self.log_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"220"):
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("sbsmtp did not start")

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def knob(self, name, value):
        """Sets (value: str) or clears (None) a knob file."""
        p = os.path.join(self.dir, name)
        if value is None:
            if os.path.exists(p):
                os.remove(p)
        else:
            with open(p, "w") as f:
                f.write(str(value))

    def mails(self):
        """Every stored message, oldest first, as email.message.EmailMessage."""
        out = []
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".eml"):
                with open(os.path.join(self.dir, name), "rb") as f:
                    out.append(message_from_bytes(f.read(), policy=policy.default))
        return out

    def mails_to(self, address):
        return [m for m in self.mails() if address.lower() in m["X-Sb-Rcpt-To"].lower()]


def body_of(m):
    """The text of a stored message (decoded)."""
    return m.get_body(preferencelist=("plain",)).get_content()


if __name__ == "__main__":
    main()
