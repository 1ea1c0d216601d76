"""Brings the platform up for an end-to-end test and drives the REST API like
a client: the real service binaries from the build tree, the real gateway, the
real PostgreSQL/Redis/Kafka named by DATABASE_URL, REDIS_URL, KAFKA_BROKERS
(scripts/test.sh exports them). Ports are offset from `make run`'s so both can
run at once.

Zero trust: every process gets its own certificate from the tests' PKI
($SB_TEST_PKI_DIR, <build>/pki, made by deploy/local/pki.sh: CTest's fixture
pki/ensure, or this module when run by hand), the CA and the token public
keys; auth alone the signing key. Platform.token() signs an access token with
that key as auth would (ES256 via the openssl CLI: the stdlib has no ECDSA).

    with Platform(["member", "auth"]) as p:
        status, body, headers = p.call("POST", "/signup", {...})

The payment provider simulator (sb-paysim, docs/payments.md section 1) runs
beside the platform when the payment service does (Platform(paysim=True/False)
to force it): on a free port, its URL in p.paysim_url, given to the payment
service as PROVIDER_URL with PROVIDER_WEBHOOK_SECRET, and sending its webhooks
to the gateway's /payments/webhook. p.provider(method, path, body) calls it
(modes, totals). Paysim(...) runs one alone (tests/e2e/test_paysim.py).

A local SMTP server that stores what it receives (sbsmtp.py, Debian's
python3-aiosmtpd) runs beside the notification service (Platform(smtp=...)
to force it): on a free port, as p.smtp (an sbsmtp.SmtpSink: mails(),
mails_to(address), stop()/start(), knob()), given to the service as
SMTP_URL.
"""
import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import registry  # noqa: E402  services/registry.txt
from sbsmtp import SmtpSink  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SERVICES = [n for n, _, _ in registry.load()]
GRPC_BASE = 22050   # the i-th service of the registry (from 1) on 22050 + i
ADMIN_BASE = 9300   # and its admin port on 9300 + i
GATEWAY_PORT = int(os.environ.get("SB_E2E_GATEWAY_PORT", "18080"))
WEBHOOK_SECRET = "sb-e2e-webhook-secret"
ADMIN_LOGIN = "e2e-admin"
ADMIN_PASSWORD = "e2e-admin-password"


def free_port():
    """A port of 127.0.0.1 nobody listens on now: bound by the OS, released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url, method="GET", body=None, headers=None, timeout=30, raw=None):
    """(status, parsed JSON body or text or None, response headers) of one
    request; a socket timeout is raised to the caller."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, payload, hdrs = r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        status, payload, hdrs = e.code, e.read(), dict(e.headers)
    try:
        parsed = json.loads(payload) if payload else None
    except ValueError:
        parsed = payload.decode(errors="replace")
    return status, parsed, hdrs


class Paysim:
    """sb-paysim alone on a free port (or `port`): url, secret, call(),
    log_text(); a context manager. SB_E2E_WRAP applies as to the platform."""

    def __init__(self, webhook_url="", secret=WEBHOOK_SECRET, env=None, build=None, port=None):
        self.build = build or os.environ.get("SB_BUILD_DIR") or os.path.join(ROOT, "build")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = secret
        self.env = dict(os.environ, PAYSIM_PORT=str(self.port), PAYSIM_WEBHOOK_URL=webhook_url,
                        PAYSIM_WEBHOOK_SECRET=secret, LOG_LEVEL="info", **(env or {}))
        self.log_path = os.path.join(tempfile.mkdtemp(prefix="sb-paysim-"), "paysim.log")
        self.proc = None

    def __enter__(self):
        wrap = os.environ.get("SB_E2E_WRAP", "").split()
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(wrap + [os.path.join(self.build, "paysim", "sb-paysim")],
                                     env=self.env, stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while not Platform._get_ok(f"{self.url}/healthz"):
            if self.proc.poll() is not None or time.time() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"sb-paysim did not start: {self.log_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self.proc.returncode not in (0, -signal.SIGTERM) and not (exc and exc[0]):
            raise RuntimeError(f"sb-paysim exited with {self.proc.returncode}: {self.log_text()[-3000:]}")
        return False

    def call(self, method, path, body=None, key=None, headers=None, timeout=30, raw=None):
        h = dict(headers or {})
        if key is not None:
            h["Idempotency-Key"] = key
        return http_json(self.url + path, method, body, h, timeout, raw)

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()


class Platform:
    def __init__(self, services=None, env=None, paysim=None, smtp=None):
        self.services = services or SERVICES
        self.build = os.environ.get("SB_BUILD_DIR") or os.path.join(ROOT, "build")
        self.pki = os.environ.get("SB_TEST_PKI_DIR") or ensure_pki(os.path.join(self.build, "pki"))
        self.kid = open(os.path.join(self.pki, "jwt", "current")).read().strip()
        self.signing_key = os.path.join(self.pki, "jwt", f"{self.kid}.key")
        self.procs = []
        self.bad_exits = []
        self.logdir = tempfile.mkdtemp(prefix="sb-e2e-")
        self.base = f"http://127.0.0.1:{GATEWAY_PORT}"
        self.env = dict(os.environ)
        for k in ("JWT_SECRET", "JWT_SIGNING_KEY_FILE", "GRPC_INSECURE"):
            self.env.pop(k, None)
        self.env.update({
            "TLS_CA_FILE": os.path.join(self.pki, "ca.crt"),
            "JWT_PUBLIC_KEYS_DIR": os.path.join(self.pki, "jwt"),
            "BOOTSTRAP_ADMIN_LOGIN": ADMIN_LOGIN,
            "BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "LOG_LEVEL": "info",
            "OUTBOX_POLL_MS": "20",
            # the per-IP login rate limit keys on X-Forwarded-For, so each run
            # is its own client (Redis keeps counters across runs for a minute)
            "GATEWAY_TRUST_FORWARDED": "1",
        })
        self.client_ip = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
        for i, s in enumerate(SERVICES, start=1):
            self.env[f"{s.upper()}_ADDR"] = f"127.0.0.1:{GRPC_BASE + i}"
        # the provider simulator: with the payment service unless told
        self.paysim = ("payment" in self.services) if paysim is None else paysim
        self.paysim_url = None
        if self.paysim:
            self.paysim_port = free_port()
            self.paysim_url = f"http://127.0.0.1:{self.paysim_port}"
            self.env.update({"PROVIDER_URL": self.paysim_url, "PROVIDER_WEBHOOK_SECRET": WEBHOOK_SECRET})
        # the SMTP server: with the notification service unless told
        self.smtp = None
        if ("notification" in self.services) if smtp is None else smtp:
            self.smtp = SmtpSink(free_port(), os.path.join(self.logdir, "mail"),
                                 os.path.join(self.logdir, "sbsmtp.log"))
            self.env.update({"SMTP_URL": self.smtp.url, "MAIL_FROM": "noreply@showbook.test"})
        self.env.update(env or {})

    # ---- lifecycle ----
    def identity(self, name):
        """The environment of process `name` (a service, or gateway): its own
        certificate, and for auth the signing key."""
        env = {"TLS_CERT_FILE": os.path.join(self.pki, name, "tls.crt"),
               "TLS_KEY_FILE": os.path.join(self.pki, name, "tls.key")}
        if name == "auth":
            env["JWT_SIGNING_KEY_FILE"] = self.signing_key
        return env

    def start(self, name, binary, extra, label=None):
        """Starts process `name` (its identity); `label` names its log and
        its entry in self.procs when it is a second replica of a service."""
        env = dict(self.env, **self.identity(name), **extra)
        label = label or name
        log = open(os.path.join(self.logdir, f"{label}.log"), "a")  # a restart appends
        # SB_E2E_WRAP runs every binary under a tool, e.g.
        # SB_E2E_WRAP="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
        wrap = os.environ.get("SB_E2E_WRAP", "").split()
        p = subprocess.Popen(wrap + [binary], env=env, stdout=log, stderr=log)
        self.procs.append((label, p, log))
        return p

    def start_service(self, s):
        return self.launch(s)

    def launch(self, name, extra=None):
        """Starts process `name` (a service of the registry, or "gateway") on
        its ports, with `extra` added to its environment."""
        if name == "gateway":
            return self.start("gateway", os.path.join(self.build, "gateway", "sb-gateway"),
                              dict({"GATEWAY_PORT": str(GATEWAY_PORT)}, **(extra or {})))
        if name == "paysim":
            return self.start("paysim", os.path.join(self.build, "paysim", "sb-paysim"),
                              dict({"PAYSIM_PORT": str(self.paysim_port),
                                    "PAYSIM_WEBHOOK_URL": f"{self.base}/payments/webhook",
                                    "PAYSIM_WEBHOOK_SECRET": self.env["PROVIDER_WEBHOOK_SECRET"]},
                                   **(extra or {})))
        i = SERVICES.index(name) + 1
        return self.start(name, os.path.join(self.build, "services", name, f"sb-{name}"),
                          dict({"GRPC_PORT": str(GRPC_BASE + i), "ADMIN_PORT": str(ADMIN_BASE + i)},
                               **(extra or {})))

    def admin_url(self, name):
        """The admin HTTP base of service `name` (/readyz, /metrics)."""
        return f"http://127.0.0.1:{ADMIN_BASE + 1 + SERVICES.index(name)}"

    def proc(self, name):
        """The latest process started as `name` (a subprocess.Popen), or None."""
        found = [p for n, p, _ in self.procs if n == name]
        return found[-1] if found else None

    def log_text(self, name):
        """Everything process `name` has logged so far (restarts included)."""
        with open(os.path.join(self.logdir, f"{name}.log")) as f:
            return f.read()

    def __enter__(self):
        try:
            if self.paysim:
                self.launch("paysim")
            if self.smtp:
                self.smtp.start()
            for s in SERVICES:
                if s in self.services:
                    self.launch(s)
            self.launch("gateway")
            self.wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def wait_ready(self, timeout=180):
        deadline = time.time() + timeout
        pending = {s: ADMIN_BASE + 1 + SERVICES.index(s) for s in self.services}
        while (pending or not self._get_ok(f"{self.base}/healthz")
               or (self.paysim and not self._get_ok(f"{self.paysim_url}/healthz"))):
            for name, p in {n: p for n, p, _ in self.procs}.items():  # the latest of each
                if p.poll() is not None:
                    self.dump_logs()
                    raise RuntimeError(f"{name} exited with {p.returncode} during start-up")
            for s, port in list(pending.items()):
                if self._get_ok(f"http://127.0.0.1:{port}/readyz"):
                    del pending[s]
            if time.time() > deadline:
                self.dump_logs()
                raise RuntimeError(f"not ready after {timeout}s: {sorted(pending)}")
            time.sleep(0.1)

    @staticmethod
    def _get_ok(url):
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, name, timeout=15):
        """SIGTERM to `name`, waits for it; its exit code (None if none ran)."""
        rc = None
        for n, p, _ in self.procs:
            if n == name and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=timeout)
            if n == name:
                rc = p.returncode
        return rc

    def restart(self, name, extra=None):
        """Starts `name` again (stopping it first if it runs) and waits until
        it is ready."""
        self.stop(name)
        self.launch(name, extra)
        self.wait_ready()

    def kill(self, name, sig=signal.SIGKILL):
        """Sends `sig` to process `name` and waits for it to end; its exit is
        expected (not a bad exit). Start it again with start_service(name)
        and wait_ready()."""
        for entry in [e for e in self.procs if e[0] == name]:
            _, p, log = entry
            if p.poll() is None:
                p.send_signal(sig)
                p.wait(timeout=60)
            log.close()
            self.procs.remove(entry)

    def __exit__(self, *exc):
        failed = exc and exc[0] is not None
        for name, p, log in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            log.close()
            if p.returncode not in (0, None) and p.returncode != -signal.SIGTERM:
                print(f"{name} exited with {p.returncode}", file=sys.stderr)
                self.bad_exits.append(f"{name}: {p.returncode}")
                failed = True
        if self.smtp:
            self.smtp.stop()
        if failed:
            self.dump_logs()
        if self.bad_exits and not exc[0]:
            # a crash, a sanitizer report or a leak at exit fails the test
            raise RuntimeError(f"processes exited badly: {self.bad_exits}")
        return False

    def dump_logs(self, tail=40):
        for name in dict.fromkeys(n for n, _, _ in self.procs):  # a restarted one once
            path = os.path.join(self.logdir, f"{name}.log")
            try:
                lines = open(path).read().splitlines()[-tail:]
            except OSError:
                continue
            print(f"---- {name} ({path}) ----", file=sys.stderr)
            for line in lines:
                print(line, file=sys.stderr)

    # ---- the client ----
    def call(self, method, path, body=None, token=None, headers=None, raw=None):
        """Returns (status, parsed JSON body or None, response headers)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        req.add_header("X-Forwarded-For", self.client_ip)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, payload, hdrs = r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            status, payload, hdrs = e.code, e.read(), dict(e.headers)
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload.decode(errors="replace")
        return status, parsed, hdrs

    def provider(self, method, path, body=None, key=None, headers=None, timeout=30):
        """Calls sb-paysim (paysim=True): (status, JSON body, headers);
        e.g. p.provider("POST", "/v1/admin/modes", {"card_number": ..., "timeout": True})."""
        h = dict(headers or {})
        if key is not None:
            h["Idempotency-Key"] = key
        return http_json(self.paysim_url + path, method, body, h, timeout)

    def login(self, login_id, password):
        st, body, _ = self.call("POST", "/login", {"loginId": login_id, "password": password})
        assert st == 200, (st, body)
        return body

    def signup(self, role="USER", password="correct-horse-1", **fields):
        login_id = fields.pop("loginId", f"{role.lower()}-{secrets.token_hex(4)}")
        body = {"loginId": login_id, "password": password, "name": f"Test {role.title()}",
                "email": f"{login_id}@example.com", "phone": "010-1234-5678", "role": role}
        body.update(fields)
        st, resp, _ = self.call("POST", "/signup", body)
        assert st == 201, (st, resp)
        return resp, password

    def user(self, role="USER"):
        """Signs up and logs in a fresh member; returns (member, tokens)."""
        m, pw = self.signup(role)
        return m, self.login(m["loginId"], pw)

    def token(self, claims, key=None, header=None):
        """An ES256 token of these exact claims signed with `key` (a PEM
        private key file; the platform's signing key by default), header
        {"alg": "ES256", "typ": "JWT", "kid": <current kid>} updated with
        `header`."""
        h = dict({"alg": "ES256", "typ": "JWT", "kid": self.kid}, **(header or {}))
        signing_input = f"{b64url(json.dumps(h).encode())}.{b64url(json.dumps(claims).encode())}"
        return f"{signing_input}.{b64url(es256_sign(key or self.signing_key, signing_input.encode()))}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def es256_sign(key_file, data: bytes) -> bytes:
    """The JWS ES256 signature of data: r || s, 32 bytes each (openssl gives
    an ASN.1 DER SEQUENCE of two INTEGERs)."""
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_file], input=data,
                         capture_output=True, check=True).stdout
    assert der[0] == 0x30, "not a DER ECDSA signature"
    i = 3 if der[1] & 0x80 else 2  # a short SEQUENCE length (always, for P-256)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        out += der[i + 2:i + 2 + n].lstrip(b"\0").rjust(32, b"\0")
        i += 2 + n
    return out


def ensure_pki(path):
    """deploy/local/pki.sh ensure path (idempotent; renews what is close to
    expiry); returns path."""
    subprocess.run([os.path.join(ROOT, "deploy", "local", "pki.sh"), "ensure", path], check=True)
    return path
