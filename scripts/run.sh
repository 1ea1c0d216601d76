#!/usr/bin/env bash
# make run: the whole platform on this machine, in the foreground.
# Installs what is missing, builds, brings up PostgreSQL/Redis/Kafka (reusing
# running ones), starts every service, prints where each part listens, follows
# their logs, and on Ctrl-C (or SIGTERM) stops everything it started.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BUILD="${SB_BUILD:-build}"
# every service of the registry (services/registry.txt): name grpc_port admin_port
mapfile -t REGISTRY < <(python3 scripts/registry.py list)
SERVICES=()
declare -A GRPC_PORT_OF ADMIN_PORT_OF
for line in "${REGISTRY[@]}"; do
  read -r name grpc admin <<<"$line"
  SERVICES+=("$name"); GRPC_PORT_OF[$name]=$grpc; ADMIN_PORT_OF[$name]=$admin
done
LOGDIR="$ROOT/.cache/run/logs"

deploy/local/setup.sh
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)"

infra_env="$(deploy/local/infra.sh up)"
eval "$infra_env"
export DATABASE_URL REDIS_URL KAFKA_BROKERS SB_INFRA_STARTED
export BOOTSTRAP_ADMIN_LOGIN="${BOOTSTRAP_ADMIN_LOGIN:-admin}"
export BOOTSTRAP_ADMIN_PASSWORD="${BOOTSTRAP_ADMIN_PASSWORD:-admin-change-me}"
# Zero trust: the local PKI in .cache/pki (deploy/local/pki.sh: a CA, a
# certificate per service and for the gateway, the access-token signing key;
# created once, renewed when close to expiry, so tokens and certificates
# survive restarts). Every process gets the CA and the public keys, its own
# certificate (identity_env), and auth alone the signing key.
PKI="$ROOT/.cache/pki"
deploy/local/pki.sh ensure "$PKI"
unset JWT_SECRET JWT_SIGNING_KEY_FILE TLS_CERT_FILE TLS_KEY_FILE
export TLS_CA_FILE="$PKI/ca.crt" JWT_PUBLIC_KEYS_DIR="$PKI/jwt"
# identity_env <name>: the env(1) assignments of process <name>
identity_env() {
  local e=("TLS_CERT_FILE=$PKI/$1/tls.crt" "TLS_KEY_FILE=$PKI/$1/tls.key")
  [ "$1" = auth ] && e+=("JWT_SIGNING_KEY_FILE=$PKI/jwt/$(head -n1 "$PKI/jwt/current").key")
  printf '%s\n' "${e[@]}"
}
GATEWAY_PORT="${GATEWAY_PORT:-8080}"

mkdir -p "$LOGDIR"
pids=()
stop_all() {
  trap - INT TERM EXIT
  echo "make run: stopping services..." >&2
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  deploy/local/infra.sh down
  echo "make run: stopped" >&2
  exit "${1:-0}"
}
trap 'stop_all 0' INT TERM   # Ctrl-C / SIGTERM: a clean stop
trap 'stop_all $?' EXIT      # a service died or start-up failed: keep the error

for s in "${SERVICES[@]}"; do
  mapfile -t id_env < <(identity_env "$s")
  env "${id_env[@]}" "$BUILD/services/$s/sb-$s" 2>"$LOGDIR/$s.log" &   # default ports: the registry's
  pids+=($!)
done

mapfile -t id_env < <(identity_env gateway)
env "${id_env[@]}" GATEWAY_PORT="$GATEWAY_PORT" "$BUILD/gateway/sb-gateway" 2>"$LOGDIR/gateway.log" &
pids+=($!)

# wait until every service is ready and the gateway answers (or something died)
for n in $(seq 1 100); do
  ready=0
  for s in "${SERVICES[@]}"; do
    if curl -fsS "http://127.0.0.1:${ADMIN_PORT_OF[$s]}/readyz" >/dev/null 2>&1; then ready=$((ready + 1)); fi
  done
  curl -fsS "http://127.0.0.1:$GATEWAY_PORT/readyz" >/dev/null 2>&1 && ready=$((ready + 1))
  [ "$ready" -gt "${#SERVICES[@]}" ] && break
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then
      echo "make run: a service exited during start-up; its log:" >&2
      tail -n 20 "$LOGDIR"/*.log >&2
      exit 1
    fi
  done
  sleep 0.2
done

{
  echo
  echo "showbook is up"
  printf '  %-14s %-22s %s\n' part listens logs
  for s in "${SERVICES[@]}"; do
    printf '  %-14s %-22s %s\n' "$s" "gRPC 127.0.0.1:${GRPC_PORT_OF[$s]}" "admin http://127.0.0.1:${ADMIN_PORT_OF[$s]}/metrics  $LOGDIR/$s.log"
  done
  printf '  %-14s %s\n' gRPC "mutual TLS: CA $TLS_CA_FILE, certificates $PKI/<name>/tls.{crt,key}; clients send Bearer tokens"
  printf '  %-14s %-22s %s\n' gateway "http://127.0.0.1:$GATEWAY_PORT" "REST API, /openapi.json, /metrics  $LOGDIR/gateway.log"
  printf '  %-14s %s\n' admin "login $BOOTSTRAP_ADMIN_LOGIN / $BOOTSTRAP_ADMIN_PASSWORD"
  printf '  %-14s %s\n' PostgreSQL "$DATABASE_URL (a database per service: sb_<service>)"
  printf '  %-14s %s\n' Redis "$REDIS_URL"
  printf '  %-14s %s\n' Kafka "$KAFKA_BROKERS"
  echo "  Ctrl-C stops everything started here."
  echo
} >&2

# demo data (idempotent): a planner with approved performances
python3 scripts/seed.py "http://127.0.0.1:$GATEWAY_PORT" || echo "make run: seeding demo data failed (see above); the platform is up anyway" >&2

tail -n 0 -qF "$LOGDIR"/*.log &
pids+=($!)
# wait for a signal, or for a service to die
while :; do
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then
      echo "make run: process $p exited; stopping" >&2
      exit 1
    fi
  done
  sleep 1
done
