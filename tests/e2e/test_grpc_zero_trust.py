#!/usr/bin/python3
"""Zero trust over gRPC (issue 9), as a client calling the services directly
sees it: the attacker matrix of scripts/attack_matrix.py (no token, forged /
alg:none / HS256-with-the-public-key / expired / wrong-aud / revoked tokens,
claimed identity metadata, a USER on ADMIN and service-only RPCs, calls
without or with the wrong service certificate, plaintext, a certificate of
another CA) and a well-behaved client (server-side TLS, signup, login through
the auth service, its own profile, bookable performances), each case with the
exact gRPC status it must get. Prints the matrix (SB_MATRIX_VERBOSE=1: with
each answer's message).

Run by CTest with /usr/bin/python3 (Debian's grpcio, protobuf, cryptography)
and the stubs the build generates from proto/ (SB_PY_STUBS, build/py); the
platform is started by sbplatform.py with its certificates and token keys."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
import attack_matrix  # noqa: E402
from sbplatform import ADMIN_LOGIN, ADMIN_PASSWORD, GRPC_BASE, SERVICES, Platform  # noqa: E402


def main():
    build = os.environ.get("SB_BUILD_DIR") or os.path.join(HERE, "..", "..", "build")
    attack_matrix.load_stubs(os.environ.get("SB_PY_STUBS") or os.path.join(build, "py"))
    ports = {s: GRPC_BASE + i for i, s in enumerate(SERVICES, start=1)}
    with Platform(["member", "auth", "performance", "reservation"], env={"LOGIN_RATE_LIMIT": "100"}) as p:
        t = attack_matrix.Target("127.0.0.1", ports, p.pki, (ADMIN_LOGIN, ADMIN_PASSWORD), login_limit=100)
        try:
            m = attack_matrix.run_matrix(t)
        finally:
            t.close()
        if m.failed():
            p.dump_logs()
    print(m.render(verbose=os.environ.get("SB_MATRIX_VERBOSE") == "1"))
    return 1 if m.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
