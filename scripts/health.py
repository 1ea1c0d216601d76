#!/usr/bin/python3
"""Asks every service's grpc.health.v1.Health/Check with Python's grpcio
(Debian python3-grpcio): a client we did not write. Prints one line per
service and exits non-zero unless all are SERVING.

The listeners are TLS: it connects as an end-user client does, verifying each
service's certificate (it must name the service) against the platform CA,
$TLS_CA_FILE or make run's .cache/pki/ca.crt, and presenting none.

usage: scripts/health.py [host]   (services and ports: services/registry.txt)
"""
import os
import sys

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import registry  # noqa: E402

# (name, gRPC port, the proto service: sb.<name>.<Name>Service)
SERVICES = [(n, g, f"sb.{n}.{n.capitalize()}Service") for n, g, _ in registry.load()]
STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def encode_request(service: str) -> bytes:
    # HealthCheckRequest { string service = 1; } in protobuf wire format
    raw = service.encode()
    assert len(raw) < 128
    return b"\x0a" + bytes([len(raw)]) + raw if raw else b""


def decode_status(data: bytes) -> int:
    # HealthCheckResponse { ServingStatus status = 1; } (absent = 0)
    if len(data) >= 2 and data[0] == 0x08:
        return data[1]
    return 0


def main() -> int:
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    with open(os.environ.get("TLS_CA_FILE") or os.path.join(root, ".cache", "pki", "ca.crt"), "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    ok = True
    for name, port, full in SERVICES:
        with grpc.secure_channel(f"{host}:{port}", creds,
                                 options=[("grpc.ssl_target_name_override", name)]) as ch:
            check = ch.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            for svc in ("", full):
                try:
                    st = STATUS.get(decode_status(check(encode_request(svc), timeout=3)), "?")
                except grpc.RpcError as e:
                    st = f"error {e.code().name}: {e.details()}"
                print(f"{name:13} {host}:{port} {svc or '(server)':36} {st}")
                ok = ok and st == "SERVING"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
