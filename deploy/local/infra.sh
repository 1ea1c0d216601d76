#!/usr/bin/env bash
# deploy/local/infra.sh: PostgreSQL, Redis and Kafka for local runs and tests.
#
#   eval "$(deploy/local/infra.sh up)"   reuse or start the three servers; prints
#                                        DATABASE_URL=, REDIS_URL=, KAFKA_BROKERS=
#                                        assignments (and nothing else) on stdout
#                                        and SB_INFRA_STARTED= (what this call started)
#   deploy/local/infra.sh down           stop what `up` started, nothing else
#                                        (only $SB_INFRA_STARTED when that is set)
#
# `up`, for each server: if one already answers at the URL in the environment
# (DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/postgres;
# REDIS_URL, default redis://127.0.0.1:6379; KAFKA_BROKERS, default
# 127.0.0.1:9092), that one is used. Otherwise the script starts its own, on
# loopback, with its files under .cache/infra/:
#   PostgreSQL  port 55432, data in pg/ (initdb, trust auth, run as the
#               `postgres` user when this script runs as root), log postgres.log
#   Redis       port 6380, no persistence, log redis.log
#   Kafka       port 9092, single-node KRaft broker from deploy/local/kafka.sh,
#               log kafka.log
# and waits until it answers (PostgreSQL: SELECT 1; Redis: PING; Kafka: a
# metadata request with kcat), or fails with an error after a bounded wait
# (PostgreSQL and Redis 60 s, Kafka 120 s plus the first download of its jars).
# Servers started here are recorded in .cache/infra/<name>.pid; running `up`
# again reuses them. `down` stops exactly those (TERM, KILL after a grace
# period) and leaves servers it merely reused alone.
# Kafka also takes 127.0.0.1:9093 (its KRaft controller). Diagnostics go to
# stderr. Runs from any directory; needs psql, redis-cli, kcat (deploy/local/
# setup.sh installs them), java and mvn for Kafka. Optional knobs:
# SB_INFRA_{PG,REDIS,KAFKA}_TIMEOUT (seconds), SB_PG_BINDIR, and for kafka.sh
# JAVA and SB_KAFKA_HEAP (default -Xmx512m).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
INFRA="$ROOT/.cache/infra"

exec 3>&1 1>&2   # fd 3: the assignments for eval; everything else goes to stderr

PG_PORT=55432
REDIS_PORT=6380
KAFKA_PORT=9092
OWN_DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
OWN_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
OWN_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
PG_TIMEOUT="${SB_INFRA_PG_TIMEOUT:-60}"
REDIS_TIMEOUT="${SB_INFRA_REDIS_TIMEOUT:-60}"
KAFKA_TIMEOUT="${SB_INFRA_KAFKA_TIMEOUT:-120}"

log() { echo "infra: $*" >&2; }
die() { echo "infra: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- helpers

# pid recorded in .cache/infra/$1.pid, if that process is alive and is the
# expected program ($2, matched against its command line); empty otherwise.
live_pid() {
  local f="$INFRA/$1.pid" pid state
  [ -f "$f" ] || return 0
  pid="$(cat "$f" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [ -n "$state" ] && [ "$state" != Z ] || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" || return 0
  echo "$pid"
}

# true if something accepts TCP connections on host $1, port $2
tcp_open() {
  timeout 2 bash -c 'exec 5<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# true if something accepts TCP connections on 127.0.0.1:$1
port_busy() { tcp_open 127.0.0.1 "$1"; }

# Single-quotes $1 for the shell that evals our output.
shq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

pg_ok() {
  [ "$(PGCONNECT_TIMEOUT=3 timeout 10 psql "$1" -XAtq -c 'SELECT 1' 2>/dev/null || true)" = 1 ]
}

redis_ok() {
  [ "$(timeout 5 redis-cli -u "$1" PING 2>/dev/null || true)" = PONG ]
}

kafka_ok() {
  # Quick no when none of the bootstrap servers accepts connections at all.
  local b open=0
  for b in ${1//,/ }; do
    b="${b#*://}"
    if tcp_open "${b%:*}" "${b##*:}"; then open=1; break; fi
  done
  [ "$open" = 1 ] || return 1
  # A metadata request for one (non-existent, never auto-created) topic; the
  # answer lists the brokers, so an empty broker list is not ready yet.
  timeout 15 kcat -b "$1" -L -t __infra_probe -m 5 -X allow.auto.create.topics=false \
    2>/dev/null | grep -Eq '^ +[1-9][0-9]* brokers?:'
}

# Waits up to $4 s for check $2 on $3 while pid file $1 (program $5) stays alive.
wait_ready() {
  local name="$1" check="$2" target="$3" limit="$4" prog="$5" start=$SECONDS
  while ! "$check" "$target"; do
    if [ -z "$(live_pid "$name" "$prog")" ]; then
      tail -n 30 "$INFRA/$name"*.log >&2 2>/dev/null || true
      die "$name exited during start-up (log: $INFRA/$name.log)"
    fi
    if (( SECONDS - start >= limit )); then
      tail -n 30 "$INFRA/$name"*.log >&2 2>/dev/null || true
      stop_one "$name" "$prog" TERM 20
      die "$name did not answer at $target within $limit s (log: $INFRA/$name.log)"
    fi
    sleep 0.5
  done
  log "$name answers at $target ($(( SECONDS - start )) s)"
}

# Stops the recorded $1 (program $2) with signal $3, then KILL after $4 s.
stop_one() {
  local name="$1" prog="$2" sig="$3" grace="$4" pid n
  pid="$(live_pid "$name" "$prog")"
  if [ -z "$pid" ]; then
    rm -f "$INFRA/$name.pid"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((n = 0; n < grace * 5; n++)); do
    [ -n "$(live_pid "$name" "$prog")" ] || break
    sleep 0.2
  done
  if [ -n "$(live_pid "$name" "$prog")" ]; then
    log "$name did not stop within $grace s: KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((n = 0; n < 50; n++)); do
      [ -n "$(live_pid "$name" "$prog")" ] || break
      sleep 0.1
    done
  fi
  rm -f "$INFRA/$name.pid"
}

# Starts "$@" in its own session, in the background, output appended to
# .cache/infra/$name.log, and records its pid. The descriptors 3 (our stdout,
# read by the caller's $(...)) and 9 (the lock) are not passed on.
launch() {
  local name="$1"
  shift
  (cd / && exec setsid "$@") </dev/null >>"$INFRA/$name.log" 2>&1 3>&- 9>&- &
  echo $! >"$INFRA/$name.pid"
}

# ---------------------------------------------------------------- PostgreSQL

pg_bindir() {
  local d
  if [ -n "${SB_PG_BINDIR:-}" ]; then echo "$SB_PG_BINDIR"; return; fi
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  [ -n "$d" ] || d="$(pg_config --bindir 2>/dev/null || true)"
  [ -x "$d/initdb" ] || die "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin (deploy/local/setup.sh installs postgresql)"
  echo "$d"
}

up_postgres() {
  local url="${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
  if pg_ok "$url"; then
    log "PostgreSQL: reusing the server at $url"
    DATABASE_URL="$url"
    return
  fi
  if [ "$url" != "$OWN_DATABASE_URL" ] && pg_ok "$OWN_DATABASE_URL"; then
    log "PostgreSQL: reusing the server at $OWN_DATABASE_URL"
    DATABASE_URL="$OWN_DATABASE_URL"
    return
  fi
  if [ -n "$(live_pid postgres postgres)" ]; then
    log "PostgreSQL: the server started earlier is still coming up"
    wait_ready postgres pg_ok "$OWN_DATABASE_URL" "$PG_TIMEOUT" postgres
    DATABASE_URL="$OWN_DATABASE_URL"
    return
  fi
  port_busy "$PG_PORT" && die "nothing answers at $url, and port $PG_PORT is taken by something that is not a usable PostgreSQL"

  local bin data as_pg=()
  bin="$(pg_bindir)"
  data="$INFRA/pg"
  if [ "$(id -u)" -eq 0 ]; then
    # initdb and postgres refuse to run as root: run them as `postgres`.
    id postgres >/dev/null 2>&1 || die "no 'postgres' user to run PostgreSQL as (install postgresql)"
    as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups)
    if ! (cd / && "${as_pg[@]}" test -x "$INFRA"); then
      # The work tree is somewhere `postgres` cannot reach (e.g. under /root):
      # keep the data directory in /tmp, behind the symlink .cache/infra/pg.
      local alt
      alt="/tmp/sb-infra-pg-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
      log "PostgreSQL: user postgres cannot reach $INFRA; the data goes to $alt"
      mkdir -p "$alt"
      [ -L "$data" ] || rm -rf "$data"
      ln -sfn "$alt" "$data"
    fi
  fi
  if [ -L "$data" ]; then mkdir -p "$(readlink "$data")"; else mkdir -p "$data"; fi
  [ "$(id -u)" -ne 0 ] || chown postgres: "$data/"
  chmod 700 "$data/"
  data="$(readlink -f "$data")"
  if [ ! -s "$data/PG_VERSION" ]; then
    log "PostgreSQL: initdb ${data#"$ROOT"/}"
    if ! (cd / && "${as_pg[@]}" "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C -N) \
        >>"$INFRA/postgres.log" 2>&1 3>&- 9>&-; then
      tail -n 20 "$INFRA/postgres.log" >&2
      die "initdb failed (log: $INFRA/postgres.log)"
    fi
  fi
  log "PostgreSQL: starting on 127.0.0.1:$PG_PORT (log: ${INFRA#"$ROOT"/}/postgres.log)"
  STARTED="$STARTED postgres"
  launch postgres "${as_pg[@]}" "$bin/postgres" -D "$data" -p "$PG_PORT" \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c logging_collector=off
  wait_ready postgres pg_ok "$OWN_DATABASE_URL" "$PG_TIMEOUT" postgres
  DATABASE_URL="$OWN_DATABASE_URL"
}

# ---------------------------------------------------------------- Redis

up_redis() {
  local url="${REDIS_URL:-redis://127.0.0.1:6379}"
  if redis_ok "$url"; then
    log "Redis: reusing the server at $url"
    REDIS_URL="$url"
    return
  fi
  if [ "$url" != "$OWN_REDIS_URL" ] && redis_ok "$OWN_REDIS_URL"; then
    log "Redis: reusing the server at $OWN_REDIS_URL"
    REDIS_URL="$OWN_REDIS_URL"
    return
  fi
  if [ -n "$(live_pid redis redis-server)" ]; then
    log "Redis: the server started earlier is still coming up"
    wait_ready redis redis_ok "$OWN_REDIS_URL" "$REDIS_TIMEOUT" redis-server
    REDIS_URL="$OWN_REDIS_URL"
    return
  fi
  port_busy "$REDIS_PORT" && die "nothing answers at $url, and port $REDIS_PORT is taken by something that is not Redis"
  command -v redis-server >/dev/null 2>&1 || die "redis-server not found (deploy/local/setup.sh installs it)"
  mkdir -p "$INFRA/redis"
  log "Redis: starting on 127.0.0.1:$REDIS_PORT (log: ${INFRA#"$ROOT"/}/redis.log)"
  STARTED="$STARTED redis"
  launch redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$INFRA/redis" \
    --save "" --appendonly no --daemonize no --logfile ""
  wait_ready redis redis_ok "$OWN_REDIS_URL" "$REDIS_TIMEOUT" redis-server
  REDIS_URL="$OWN_REDIS_URL"
}

# ---------------------------------------------------------------- Kafka

# Phase 1: reuse, or have kafka.sh start the broker (without waiting for it).
KAFKA_WAIT=0
up_kafka_start() {
  local brokers="${KAFKA_BROKERS:-127.0.0.1:9092}"
  if kafka_ok "$brokers"; then
    log "Kafka: reusing the broker at $brokers"
    KAFKA_BROKERS="$brokers"
    return
  fi
  KAFKA_BROKERS="$OWN_KAFKA_BROKERS"
  if [ "$brokers" != "$OWN_KAFKA_BROKERS" ] && kafka_ok "$OWN_KAFKA_BROKERS"; then
    log "Kafka: reusing the broker at $OWN_KAFKA_BROKERS"
    return
  fi
  if [ -n "$(live_pid kafka kafka.Kafka)" ]; then
    log "Kafka: the broker started earlier is still coming up"
    KAFKA_WAIT=1
    return
  fi
  port_busy "$KAFKA_PORT" && die "nothing answers at $brokers, and port $KAFKA_PORT is taken by something that is not a Kafka broker"
  port_busy "$((KAFKA_PORT + 1))" && die "port $((KAFKA_PORT + 1)) (the Kafka controller's) is taken"
  command -v kcat >/dev/null 2>&1 || die "kcat not found (deploy/local/setup.sh installs it)"
  STARTED="$STARTED kafka"
  "$ROOT/deploy/local/kafka.sh" start 3>&- 9>&- || die "deploy/local/kafka.sh could not start the broker"
  KAFKA_WAIT=1
}

# Phase 2: wait for the broker we started.
up_kafka_wait() {
  [ "$KAFKA_WAIT" = 1 ] || return 0
  log "Kafka: waiting for 127.0.0.1:$KAFKA_PORT (up to $KAFKA_TIMEOUT s)"
  wait_ready kafka kafka_ok "$OWN_KAFKA_BROKERS" "$KAFKA_TIMEOUT" kafka.Kafka
}

# ---------------------------------------------------------------- main

lock() {
  mkdir -p "$INFRA"
  exec 9>"$INFRA/.lock"
  flock -w 600 9 || die "another infra.sh has held $INFRA/.lock for 10 minutes"
}

cmd_up() {
  lock
  STARTED=""
  for tool in psql redis-cli kcat; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (run deploy/local/setup.sh)"
  done
  # Kafka is the slowest: start it first, bring up the others meanwhile.
  up_kafka_start
  up_postgres
  up_redis
  up_kafka_wait
  {
    echo "DATABASE_URL=$(shq "$DATABASE_URL")"
    echo "REDIS_URL=$(shq "$REDIS_URL")"
    echo "KAFKA_BROKERS=$(shq "$KAFKA_BROKERS")"
    echo "SB_INFRA_STARTED=$(shq "${STARTED# }")"
  } >&3
}

# With SB_INFRA_STARTED in the environment (what the caller's own `up` printed),
# stops only those servers: a `make test` that reused a broker some other run
# started leaves it running for that run. Without it (make infra-down), stops
# every server any `up` started.
cmd_down() {
  lock
  local which="kafka redis postgres" any=0
  [ "${SB_INFRA_STARTED+set}" = set ] && which="$SB_INFRA_STARTED"
  case " $which " in *" kafka "*) [ -n "$(live_pid kafka kafka.Kafka)" ] && any=1; stop_one kafka kafka.Kafka TERM 30 ;; esac
  case " $which " in *" redis "*) [ -n "$(live_pid redis redis-server)" ] && any=1; stop_one redis redis-server TERM 10 ;; esac
  # SIGINT: PostgreSQL's fast shutdown
  case " $which " in *" postgres "*) [ -n "$(live_pid postgres postgres)" ] && any=1; stop_one postgres postgres INT 30 ;; esac
  if [ "$any" = 1 ]; then log "stopped what this run's infra.sh up had started"; else log "nothing to stop (servers reused, or not started here)"; fi
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  *) echo "usage: $0 up|down   (eval \"\$($0 up)\" sets DATABASE_URL, REDIS_URL, KAFKA_BROKERS)" >&2; exit 2 ;;
esac
