#!/usr/bin/env python3
"""The payment ledger check (docs/payments.md section 2) from a shell: the
card provider's totals and charges against the payment service's payments,
through GET /admin/payments/ledger as an admin. Prints the report; exits 0
when it is clean, 1 when there are differences (one per line), 2 when the
check could not be made.

usage: scripts/ledger_check.py [base-url]   (admin from BOOTSTRAP_ADMIN_LOGIN/PASSWORD,
                                             default admin / admin-change-me)
"""
import json
import os
import sys
import urllib.error
import urllib.request

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"


def call(method, path, body=None, token=None):
    req = urllib.request.Request(BASE + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except OSError as e:
        return 0, {"error": {"message": str(e)}}


def main():
    st, tok = call("POST", "/login", {"loginId": os.environ.get("BOOTSTRAP_ADMIN_LOGIN", "admin"),
                                      "password": os.environ.get("BOOTSTRAP_ADMIN_PASSWORD", "admin-change-me")})
    if st != 200:
        print(f"ledger_check: admin login failed: {st} {tok}", file=sys.stderr)
        return 2
    st, rep = call("GET", "/admin/payments/ledger", token=tok["accessToken"])
    if st != 200:
        print(f"ledger_check: {st} {rep}", file=sys.stderr)
        return 2
    print(f"charged:  provider {rep.get('providerCharged', '0')}, platform {rep.get('platformCharged', '0')}")
    print(f"refunded: provider {rep.get('providerRefunded', '0')}, platform {rep.get('platformRefunded', '0')}")
    for d in rep.get("differences", []):
        print(f"  {d}")
    print("clean" if rep.get("clean") else f"{len(rep.get('differences', []))} differences")
    return 0 if rep.get("clean") else 1


if __name__ == "__main__":
    sys.exit(main())
