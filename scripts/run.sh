#!/usr/bin/env bash
# make run: the whole platform on this machine, in the foreground.
# Installs what is missing, builds what it runs, brings up PostgreSQL/Redis/
# Kafka (reusing running ones), makes the local PKI (deploy/local/pki.sh:
# each process gets its certificate, auth the token signing key), starts every
# service, prints where each part listens, follows their logs (access lines
# summed up every 5 s: scripts/log_summary.py), and on Ctrl-C
# (or SIGTERM) stops everything it started.
#
# Supervision: once the platform is up, a service or the gateway that exits
# (a crash, kill -9) is started again after a backoff (0.5 s doubling to 10 s;
# back to 0.5 s for a process that had stayed up 30 s), said on the terminal,
# while the rest keep running. A process that exits during start-up stops the
# run with its log instead (a port taken, a bad setting: restarting would bury
# the reason). Ctrl-C / SIGTERM stops everything and restarts nothing.
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
# only what runs: a test that does not compile does not keep the platform from starting
cmake --build "$BUILD" -j"$(nproc)" --target sb-gateway sb-paysim "${SERVICES[@]/#/sb-}"

infra_env="$(deploy/local/infra.sh up)"
eval "$infra_env"
export DATABASE_URL REDIS_URL KAFKA_BROKERS SB_INFRA_STARTED
export BOOTSTRAP_ADMIN_LOGIN="${BOOTSTRAP_ADMIN_LOGIN:-admin}"
export BOOTSTRAP_ADMIN_PASSWORD="${BOOTSTRAP_ADMIN_PASSWORD:-admin-change-me}"
GATEWAY_PORT="${GATEWAY_PORT:-8080}"
# the payment-provider simulator (docs/payments.md section 1): the payment
# service calls it at PROVIDER_URL, it signs its webhooks to the gateway with
# the secret both default to (PAYSIM_WEBHOOK_SECRET / PROVIDER_WEBHOOK_SECRET)
export PAYSIM_PORT="${PAYSIM_PORT:-7190}"
export PROVIDER_URL="${PROVIDER_URL:-http://127.0.0.1:$PAYSIM_PORT}"
export PAYSIM_WEBHOOK_URL="${PAYSIM_WEBHOOK_URL-http://127.0.0.1:$GATEWAY_PORT/payments/webhook}"
# the local SMTP server that stores what it receives (tests/e2e/sbsmtp.py,
# Debian's python3-aiosmtpd): the notification service mails every notice
# to it; each mail is a file in $MAILDIR
export SMTP_PORT="${SMTP_PORT:-2525}"
export SMTP_URL="${SMTP_URL:-smtp://127.0.0.1:$SMTP_PORT}"
export MAIL_FROM="${MAIL_FROM:-noreply@showbook.local}"
MAILDIR="$ROOT/.cache/run/mail"

mkdir -p "$LOGDIR"
deploy/local/pki.sh ensure   # the platform CA, a certificate per process, the token signing key
# the supervised processes: name -> pid, start time, next backoff, restart due
PROCS=(paysim smtp "${SERVICES[@]}" gateway)
declare -A PID_OF STARTED_MS BACKOFF_MS RESTART_AT_MS
tail_pid=""
now_ms() { local t="${EPOCHREALTIME//[.,]/}"; echo $((10#$t / 1000)); }

start_proc() { # name: starts it in the background, its stderr appended to its log
  local name="$1" bin="$BUILD/services/$1/sb-$1"   # default ports: the registry's
  [ "$name" = gateway ] && bin="$BUILD/gateway/sb-gateway"
  if [ "$name" = smtp ]; then # outside the platform too
    /usr/bin/python3 tests/e2e/sbsmtp.py --port "$SMTP_PORT" --dir "$MAILDIR" 2>>"$LOGDIR/$name.log" &
    PID_OF[$name]=$!
    STARTED_MS[$name]=$(now_ms)
    return
  fi
  if [ "$name" = paysim ]; then # no certificate: it stands for a system outside the platform
    "$BUILD/paysim/sb-paysim" 2>>"$LOGDIR/$name.log" &
    PID_OF[$name]=$!
    STARTED_MS[$name]=$(now_ms)
    return
  fi
  # its certificate and the token keys (.cache/pki, deploy/local/pki.sh);
  # exec: the pid is the process's own
  (eval "$(deploy/local/pki.sh env "" "$name")" && GATEWAY_PORT="$GATEWAY_PORT" exec "$bin") 2>>"$LOGDIR/$name.log" &
  PID_OF[$name]=$!
  STARTED_MS[$name]=$(now_ms)
}

stop_all() {
  trap - INT TERM EXIT
  echo "make run: stopping services..." >&2
  local p
  for p in "${PID_OF[@]}" $tail_pid; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PID_OF[@]}" $tail_pid; do wait "$p" 2>/dev/null || true; done
  deploy/local/infra.sh down
  echo "make run: stopped" >&2
  exit "${1:-0}"
}
trap 'stop_all 0' INT TERM   # Ctrl-C / SIGTERM: a clean stop
trap 'stop_all $?' EXIT      # start-up failed: keep the error

for name in "${PROCS[@]}"; do
  : >"$LOGDIR/$name.log"
  start_proc "$name"
  BACKOFF_MS[$name]=500
done

# wait until every service is ready and the gateway answers (or something died)
for n in $(seq 1 100); do
  ready=0
  for s in "${SERVICES[@]}"; do
    if curl -fsS "http://127.0.0.1:${ADMIN_PORT_OF[$s]}/readyz" >/dev/null 2>&1; then ready=$((ready + 1)); fi
  done
  curl -fsS "http://127.0.0.1:$GATEWAY_PORT/readyz" >/dev/null 2>&1 && ready=$((ready + 1))
  curl -fsS "http://127.0.0.1:$PAYSIM_PORT/healthz" >/dev/null 2>&1 && ready=$((ready + 1))
  [ "$ready" -gt "$((${#SERVICES[@]} + 1))" ] && break
  for name in "${PROCS[@]}"; do
    if ! kill -0 "${PID_OF[$name]}" 2>/dev/null; then
      echo "make run: $name exited during start-up; its log:" >&2
      tail -n 20 "$LOGDIR/$name.log" >&2
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
  printf '  %-14s %-22s %s\n' gateway "http://127.0.0.1:$GATEWAY_PORT" "REST API, /openapi.json, /metrics  $LOGDIR/gateway.log"
  printf '  %-14s %-22s %s\n' paysim "$PROVIDER_URL" "payment provider simulator, /v1/admin/totals  $LOGDIR/paysim.log"
  printf '  %-14s %-22s %s\n' smtp "$SMTP_URL" "mail relay that stores what it gets: $MAILDIR/*.eml  $LOGDIR/smtp.log"
  printf '  %-14s %s\n' admin "login $BOOTSTRAP_ADMIN_LOGIN / $BOOTSTRAP_ADMIN_PASSWORD"
  printf '  %-14s %s\n' PostgreSQL "$DATABASE_URL (a database per service: sb_<service>)"
  printf '  %-14s %s\n' Redis "$REDIS_URL"
  printf '  %-14s %s\n' Kafka "$KAFKA_BROKERS"
  echo "  Ctrl-C stops everything started here."
  echo
} >&2

# demo data (idempotent): a planner with approved performances
python3 scripts/seed.py "http://127.0.0.1:$GATEWAY_PORT" || echo "make run: seeding demo data failed (see above); the platform is up anyway" >&2

# the terminal: every log line except the access lines (one per request),
# which scripts/log_summary.py sums up every SUMMARY_S seconds (requests/s,
# status classes, p50/p99); the full logs stay in $LOGDIR. SB_RUN_ACCESS_LINES=1
# shows every line instead.
follow_logs() {
  if [ "${SB_RUN_ACCESS_LINES:-0}" = 1 ]; then
    tail -n 0 -qF "$LOGDIR"/*.log &
  else
    tail -n 0 -qF "$LOGDIR"/*.log > >(python3 scripts/log_summary.py "${SUMMARY_S:-5}" >&2) &
  fi
  tail_pid=$!
}
follow_logs
# supervise until a signal: restart what exits, with backoff
while :; do
  now=$(now_ms)
  for name in "${PROCS[@]}"; do
    pid="${PID_OF[$name]}"
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      st=0; wait "$pid" 2>/dev/null || st=$?
      how="status $st"; [ "$st" -gt 128 ] && how="signal $(kill -l $((st - 128)) 2>/dev/null || echo $((st - 128)))"
      [ $((now - STARTED_MS[$name])) -ge 30000 ] && BACKOFF_MS[$name]=500
      delay=${BACKOFF_MS[$name]}
      RESTART_AT_MS[$name]=$((now + delay))
      next=$((delay * 2)); [ "$next" -gt 10000 ] && next=10000
      BACKOFF_MS[$name]=$next
      PID_OF[$name]=""
      printf 'make run: %s (pid %s) exited (%s) after %d s; restarting in %d.%d s\n' \
        "$name" "$pid" "$how" $(((now - STARTED_MS[$name]) / 1000)) $((delay / 1000)) $((delay % 1000 / 100)) >&2
    elif [ -z "$pid" ] && [ "$now" -ge "${RESTART_AT_MS[$name]}" ]; then
      start_proc "$name"
      echo "make run: $name restarted (pid ${PID_OF[$name]})" >&2
    fi
  done
  if ! kill -0 "$tail_pid" 2>/dev/null; then
    follow_logs
  fi
  sleep 0.2
done
