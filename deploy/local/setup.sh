#!/usr/bin/env bash
# Idempotent machine setup: installs the Debian packages the build, the tests and
# the local infrastructure need. Safe to run again; does nothing when all is present.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  libgrpc-dev protobuf-c-compiler libprotobuf-c-dev protobuf-compiler
  libpq-dev libhiredis-dev librdkafka-dev libjwt-dev libsodium-dev libssl-dev openssl
  libcriterion-dev libjansson-dev libmicrohttpd-dev libcurl4-openssl-dev
  postgresql redis-server
  libprotobuf-dev python3 python3-protobuf python3-grpcio python3-grpc-tools python3-cryptography python3-aiosmtpd clang-format kcat curl wrk valgrind clang libclang-rt-14-dev
)
command -v java >/dev/null 2>&1 || PKGS+=(default-jdk-headless)
command -v mvn >/dev/null 2>&1 || PKGS+=(maven)
# node + npm run the OpenAPI validator of the e2e tests (tests/openapi)
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || true
  # policy-rc.d keeps Debian from auto-starting daemons we manage ourselves
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
  echo "setup: all packages present" >&2
fi
