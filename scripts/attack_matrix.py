#!/usr/bin/python3
"""The zero-trust attacker matrix (issue 9): a gRPC client calling the
services directly, as an attacker and as a well-behaved client, each case
with the exact gRPC status it must get. Prints the matrix (case, expected,
got) and exits 1 when any case got something else.

usage (against `make run`, in another terminal):
  scripts/attack_matrix.py [-v] [--host 127.0.0.1] [--pki .cache/pki] [--stubs build/py]

  -v      each answer's message under its line ("token expired", ...)
  ports   the registry's (scripts/registry.py list)
  --pki   the platform's PKI (deploy/local/pki.sh): ca.crt to trust the
          services, <name>/tls.crt|key for the service-certificate cases
          (client-test, auth), jwt/current and jwt/<kid>.key to mint the
          expired / wrong-aud / wrong-iss tokens with the platform's own key
          (so they fail for that reason alone, not for their signature)
  --stubs the Python stubs the build generates from proto/ (tests/CMakeLists.txt)
  admin   BOOTSTRAP_ADMIN_LOGIN / BOOTSTRAP_ADMIN_PASSWORD (make run's defaults)

tests/e2e/test_grpc_zero_trust.py runs the same matrix (run_matrix) against a
platform it starts. Debian's python3-grpcio, python3-protobuf and
python3-cryptography (/usr/bin/python3); tokens are built here by hand
(base64url, ES256 with `cryptography`, HS256 with hmac) so nothing of the
platform's own JWT code vouches for them.
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
import uuid

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import registry  # noqa: E402  services/registry.txt

TIMEOUT = 10  # seconds a call may take
ISSUER, AUDIENCE = "showbook-auth", "showbook"  # sb/jwt.h


def load_stubs(path):
    """Imports the generated modules from path (the build's py/ directory)."""
    if not os.path.isfile(os.path.join(path, "member_pb2_grpc.py")):
        raise SystemExit(f"no gRPC stubs in {path}: build first (cmake --build build, target sb_py_stubs)")
    sys.path.insert(0, path)
    global grpc, member_pb2, member_grpc, auth_pb2, auth_grpc, perf_pb2, perf_grpc, resv_pb2, resv_grpc
    import grpc  # noqa: F811  Debian python3-grpcio
    import auth_pb2  # noqa: F811
    import auth_pb2_grpc as auth_grpc  # noqa: F811
    import member_pb2  # noqa: F811
    import member_pb2_grpc as member_grpc  # noqa: F811
    import performance_pb2 as perf_pb2  # noqa: F811
    import performance_pb2_grpc as perf_grpc  # noqa: F811
    import reservation_pb2 as resv_pb2  # noqa: F811
    import reservation_pb2_grpc as resv_grpc  # noqa: F811


# ---------------------------------------------------------------- tokens

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jws_input(header: dict, claims: dict) -> str:
    enc = lambda d: b64url(json.dumps(d, separators=(",", ":")).encode())  # noqa: E731
    return f"{enc(header)}.{enc(claims)}"


def es256(key, kid: str, claims: dict) -> str:
    """A JWS signed with an EC P-256 key: r || s, 32 bytes each (not DER)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    signing_input = jws_input({"alg": "ES256", "typ": "JWT", "kid": kid}, claims)
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def alg_none(kid: str, claims: dict) -> str:
    return jws_input({"alg": "none", "typ": "JWT", "kid": kid}, claims) + "."


def hs256(secret: bytes, kid: str, claims: dict) -> str:
    signing_input = jws_input({"alg": "HS256", "typ": "JWT", "kid": kid}, claims)
    return f"{signing_input}.{b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def claims_for(user_id: str, role: str, **over) -> dict:
    now = int(time.time())
    c = {"iss": ISSUER, "aud": AUDIENCE, "sub": user_id, "role": role, "jti": secrets.token_hex(16),
         "iat": now, "exp": now + 300}
    c.update(over)
    return c


def foreign_ca_cert(name: str):
    """A CA of our own and a certificate it issues for `name` (PEM key, PEM cert):
    a client certificate the platform's CA never signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the platform CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH,
                                                  ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return pem_key, leaf.public_bytes(serialization.Encoding.PEM)


# ---------------------------------------------------------------- the client

class Target:
    """Where the services listen and what the client holds.

    host, ports ({service: grpc port}), pki (deploy/local/pki.sh layout),
    admin (login, password) of the bootstrap admin."""

    def __init__(self, host, ports, pki, admin, login_limit=20):
        self.host, self.ports, self.pki, self.admin = host, ports, pki, admin
        self.login_limit = login_limit  # the platform's LOGIN_RATE_LIMIT
        self.ca = self.read("ca.crt")
        self.kid = self.read("jwt/current").decode().split()[0]
        self.pub_pem = self.read(f"jwt/{self.kid}.pub.pem")
        self._channels = []

    def read(self, rel):
        with open(os.path.join(self.pki, rel), "rb") as f:
            return f.read()

    def platform_key(self):
        from cryptography.hazmat.primitives import serialization
        return serialization.load_pem_private_key(self.read(f"jwt/{self.kid}.key"), password=None)

    def channel(self, service, cert=None, key=None, plaintext=False, root=None):
        """A channel to service: server-side TLS against the platform CA,
        checking the service's name in its certificate; with cert/key (PEM)
        mutual TLS; plaintext: no TLS at all."""
        addr = f"{self.host}:{self.ports[service]}"
        opts = [("grpc.use_local_subchannel_pool", 1)]  # no connection shared between cases
        if plaintext:
            ch = grpc.insecure_channel(addr, options=opts)
        else:
            creds = grpc.ssl_channel_credentials(root_certificates=root or self.ca, private_key=key,
                                                 certificate_chain=cert)
            ch = grpc.secure_channel(addr, creds, options=opts + [("grpc.ssl_target_name_override", service)])
        self._channels.append(ch)
        return ch

    def service_channel(self, service, as_name):
        """Mutual TLS presenting the platform certificate of as_name."""
        return self.channel(service, cert=self.read(f"{as_name}/tls.crt"), key=self.read(f"{as_name}/tls.key"))

    def close(self):
        for ch in self._channels:
            ch.close()
        self._channels = []


def md(token=None, **extra):
    """Call metadata: the bearer token and any other (lower-case) keys."""
    out = [("authorization", f"Bearer {token}")] if token else []
    out += [(k.replace("_", "-"), v) for k, v in extra.items()]
    return out


class SetupError(Exception):
    """A step before the call under test failed: the case proves nothing."""


def status_of(fn):
    """Runs one call; returns (status name, response or None, server message)."""
    try:
        return "OK", fn(), ""
    except grpc.RpcError as e:
        return e.code().name, None, e.details() or ""
    except SetupError as e:
        return "SETUP FAILED", None, str(e)


class Matrix:
    def __init__(self):
        self.rows = []  # (section, case, expected, got, detail)

    def case(self, section, name, expected, fn, check=None):
        """Runs fn (one call), records expected vs got; check(resp) -> error
        text refines an OK answer (the right user, the right profile)."""
        got, resp, detail = status_of(fn)
        if got == "OK" and check:
            why = check(resp)
            if why:
                got, detail = "OK (wrong answer)", why
        self.rows.append((section, name, expected, got, detail))
        return resp

    def failed(self):
        return [r for r in self.rows if r[2] != r[3]]

    def render(self, verbose=False):
        """The matrix; verbose: each answer's message under its line."""
        w_case = max(len(r[1]) for r in self.rows)
        w_exp = max(len("expected"), *(len(r[2]) for r in self.rows))
        lines = [f"{'case':<{w_case}}  {'expected':<{w_exp}}  got", "-" * (w_case + w_exp + 24)]
        section = None
        for sec, name, exp, got, detail in self.rows:
            if sec != section:
                lines.append(f"[{sec}]")
                section = sec
            mark = "" if exp == got else "   <-- MISMATCH"
            lines.append(f"{name:<{w_case}}  {exp:<{w_exp}}  {got}{mark}")
            if detail and (verbose or exp != got):
                lines.append(f"{'':<{w_case}}    {detail[:160]}")
        passed = len(self.rows) - len(self.failed())
        lines.append(f"{passed}/{len(self.rows)} cases as expected")
        return "\n".join(lines)


def run_matrix(t: Target) -> Matrix:
    m = Matrix()
    member = lambda ch: member_grpc.MemberServiceStub(ch)  # noqa: E731
    auth = lambda ch: auth_grpc.AuthServiceStub(ch)  # noqa: E731
    tls = {s: t.channel(s) for s in ("member", "auth", "performance", "reservation")}  # server-side TLS only
    login_pw = "correct-horse-1"

    def signup(tag):
        lid = f"zt-{tag}-{secrets.token_hex(4)}"
        req = member_pb2.SignupRequest(login_id=lid, password=login_pw, name=f"Zero Trust {tag}",
                                       email=f"{lid}@example.com", phone="010-1234-5678", role=1)  # USER
        return member(tls["member"]).Signup(req, timeout=TIMEOUT)

    def login(lid, pw=login_pw):
        return auth(tls["auth"]).Login(auth_pb2.LoginRequest(login_id=lid, password=pw), timeout=TIMEOUT)

    def get_member(ch, user_id, metadata):
        return lambda: member(ch).GetMember(member_pb2.GetMemberRequest(user_id=user_id),
                                            metadata=metadata, timeout=TIMEOUT)

    def check_credentials(ch, metadata=(), lid="nobody", pw="nothing"):
        return lambda: member(ch).CheckCredentials(member_pb2.CheckCredentialsRequest(login_id=lid, password=pw),
                                                   metadata=list(metadata), timeout=TIMEOUT)

    def is_user(uid):
        return lambda r: None if r.user_id == uid else f"answered for {r.user_id!r}, not {uid!r}"

    # ---- a well-behaved client: server-side TLS, no certificate, a bearer token
    sec = "well-behaved client (server-side TLS, bearer token)"
    me = m.case(sec, "MemberService/Signup (public)", "OK", lambda: signup("me"),
                check=lambda r: None if r.user_id else "no user id")
    if not me:
        return m  # nothing below can run without a member
    tok = m.case(sec, "AuthService/Login", "OK", lambda: login(me.login_id),
                 check=lambda r: None if r.access_token and r.user_id == me.user_id else "no token for the user")
    if not tok:
        return m
    m.case(sec, "MemberService/GetMember own profile", "OK",
           get_member(tls["member"], me.user_id, md(tok.access_token)),
           check=lambda r: None if r.login_id == me.login_id else f"got {r.login_id!r}")
    m.case(sec, "ReservationService/ListBookable (public)", "OK",
           lambda: resv_grpc.ReservationServiceStub(tls["reservation"]).ListBookable(
               resv_pb2.ListBookableRequest(page_size=10), timeout=TIMEOUT))

    other = signup("other")  # the victim whose profile the attacks below want
    admin_tok = login(*t.admin).access_token

    # ---- transport
    sec = "transport"
    m.case(sec, "plaintext connection to a TLS port", "UNAVAILABLE",
           get_member(t.channel("member", plaintext=True), me.user_id, md(tok.access_token)))
    fkey, fcert = foreign_ca_cert("auth")
    m.case(sec, "client cert from another CA (CN=auth)", "UNAVAILABLE",
           check_credentials(t.channel("member", cert=fcert, key=fkey), lid=me.login_id, pw=login_pw))

    # ---- tokens: each on the member's own profile, which its real token may read
    sec = "tokens (GetMember own profile)"
    own = lambda token: get_member(tls["member"], me.user_id, md(token))  # noqa: E731
    key = t.platform_key()
    m.case(sec, "no token", "UNAUTHENTICATED", own(None))
    m.case(sec, "minted here with the platform key (control)", "OK",
           own(es256(key, t.kid, claims_for(me.user_id, "USER"))), check=is_user(me.user_id))
    from cryptography.hazmat.primitives.asymmetric import ec
    m.case(sec, "forged: another EC key, platform kid", "UNAUTHENTICATED",
           own(es256(ec.generate_private_key(ec.SECP256R1()), t.kid, claims_for(me.user_id, "USER"))))
    m.case(sec, "alg: none", "UNAUTHENTICATED", own(alg_none(t.kid, claims_for(me.user_id, "USER"))))
    m.case(sec, "HS256 keyed with the public key PEM", "UNAUTHENTICATED",
           own(hs256(t.pub_pem, t.kid, claims_for(me.user_id, "USER"))))
    now = int(time.time())
    m.case(sec, "expired (platform key)", "UNAUTHENTICATED",
           own(es256(key, t.kid, claims_for(me.user_id, "USER", iat=now - 900, exp=now - 300))))
    m.case(sec, "wrong aud (platform key)", "UNAUTHENTICATED",
           own(es256(key, t.kid, claims_for(me.user_id, "USER", aud="some-other-api"))))
    m.case(sec, "wrong iss (platform key)", "UNAUTHENTICATED",
           own(es256(key, t.kid, claims_for(me.user_id, "USER", iss="someone-else"))))

    def revoked():
        try:  # a session of its own, logged out; then its access token is used again
            s = login(me.login_id)
            own(s.access_token)()  # valid before the logout
            auth(tls["auth"]).Logout(auth_pb2.LogoutRequest(refresh_token=s.refresh_token,
                                                            access_token=s.access_token),
                                     metadata=md(s.access_token), timeout=TIMEOUT)
        except grpc.RpcError as e:
            raise SetupError(f"login/use/logout: {e.code().name} {e.details()}")
        # refused within a second: the local denylists hear of it over Redis pub/sub (sb/denylist.h)
        deadline = time.time() + 1.0
        while time.time() < deadline:
            try:
                own(s.access_token)()
            except grpc.RpcError:
                break
        return own(s.access_token)()
    m.case(sec, "revoked (AuthService/Logout, then reused)", "UNAUTHENTICATED", revoked)

    # ---- identity metadata a caller writes itself is never read
    sec = "claimed identity metadata"
    m.case(sec, "x-user-id + x-user-role: ADMIN, no token", "UNAUTHENTICATED",
           get_member(tls["member"], other.user_id, md(None, x_user_id=other.user_id, x_user_role="ADMIN")))
    m.case(sec, "USER token + x-user-role: ADMIN, other member", "PERMISSION_DENIED",
           get_member(tls["member"], other.user_id,
                      md(tok.access_token, x_user_id=other.user_id, x_user_role="ADMIN")))
    m.case(sec, "USER token + x-caller-service: auth, CheckCredentials", "PERMISSION_DENIED",
           check_credentials(tls["member"], md(tok.access_token, x_caller_service="auth")))

    # ---- authorization: the method's policy, checked by the service itself
    sec = "authorization (policy in the service)"
    m.case(sec, "ADMIN reads another member (control)", "OK",
           get_member(tls["member"], other.user_id, md(admin_tok)), check=is_user(other.user_id))
    m.case(sec, "USER -> PerformanceService/ApprovePerformance (ADMIN)", "PERMISSION_DENIED",
           lambda: perf_grpc.PerformanceServiceStub(tls["performance"]).ApprovePerformance(
               perf_pb2.ApprovePerformanceRequest(performance_id=str(uuid.uuid4())),
               metadata=md(tok.access_token), timeout=TIMEOUT))
    m.case(sec, "USER -> MemberService/CheckCredentials (auth only)", "PERMISSION_DENIED",
           check_credentials(tls["member"], md(tok.access_token)))
    m.case(sec, "ADMIN token, no service cert -> CheckCredentials", "PERMISSION_DENIED",
           check_credentials(tls["member"], md(admin_tok), lid=me.login_id, pw=login_pw))
    m.case(sec, "cert client-test (platform CA) -> CheckCredentials", "PERMISSION_DENIED",
           check_credentials(t.service_channel("member", "client-test"), lid=me.login_id, pw=login_pw))
    m.case(sec, "cert auth -> CheckCredentials", "OK",
           check_credentials(t.service_channel("member", "auth"), lid=me.login_id, pw=login_pw),
           check=is_user(me.user_id))

    sec = "rate limit (in the service, not only the gateway)"

    def refresh_flood():
        # LOGIN_RATE_LIMIT attempts per minute per client address; attempt
        # limit + 1 must be turned away (earlier ones of this minute count too)
        for _ in range(t.login_limit):
            try:
                auth(tls["auth"]).Refresh(auth_pb2.RefreshRequest(refresh_token="guess"), timeout=TIMEOUT)
            except grpc.RpcError:
                pass
        return auth(tls["auth"]).Refresh(auth_pb2.RefreshRequest(refresh_token="guess"), timeout=TIMEOUT)
    m.case(sec, "LOGIN_RATE_LIMIT+1 direct AuthService/Refresh guesses", "RESOURCE_EXHAUSTED", refresh_flood)
    return m


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--pki", default=os.path.join(ROOT, ".cache", "pki"))
    ap.add_argument("--stubs", default=os.environ.get("SB_PY_STUBS") or os.path.join(ROOT, "build", "py"))
    ap.add_argument("-v", "--verbose", action="store_true", help="each answer's message under its line")
    a = ap.parse_args(argv[1:])
    load_stubs(a.stubs)
    ports = {n: g for n, g, _ in registry.load()}
    admin = (os.environ.get("BOOTSTRAP_ADMIN_LOGIN", "admin"),
             os.environ.get("BOOTSTRAP_ADMIN_PASSWORD", "admin-change-me"))
    t = Target(a.host, ports, a.pki, admin, int(os.environ.get("LOGIN_RATE_LIMIT", "20")))
    try:
        m = run_matrix(t)
    finally:
        t.close()
    print(m.render(verbose=a.verbose))
    return 1 if m.failed() else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
