#!/usr/bin/env bash
# deploy/local/kafka.sh: a real, single-node Apache Kafka broker (KRaft mode,
# broker and controller in one JVM) for local runs and tests. Called by
# deploy/local/infra.sh; it can also be run by hand.
#
#   deploy/local/kafka.sh resolve   fetch the broker's jars with Maven, nothing more
#   deploy/local/kafka.sh start     resolve, write the configuration, format the
#                                   storage once, and start the broker in the
#                                   background (default)
#
# - The broker (org.apache.kafka:kafka_2.13, kafka-tools and the log4j2 binding,
#   versions in deploy/local/kafka/pom.xml) comes from Maven Central and is
#   copied into .cache/kafka/libs; that is skipped while the pom is unchanged.
# - Configuration and data live under .cache/infra: kafka/server.properties,
#   kafka/log4j2.xml, kafka-data/ (formatted once, with a generated cluster id).
# - It listens on PLAINTEXT://127.0.0.1:9092 (clients) and 127.0.0.1:9093
#   (the KRaft controller quorum), loopback only.
# - The broker's log goes to .cache/infra/kafka.log (its stdout/stderr to
#   .cache/infra/kafka-console.log); its pid is written to .cache/infra/kafka.pid.
# - A second, private broker (the fault tests stop and restart their own,
#   tests/e2e/sbservers.py) takes other ports and another folder:
#     SB_KAFKA_PORT             client port (default 9092)
#     SB_KAFKA_CONTROLLER_PORT  controller port (default SB_KAFKA_PORT + 1)
#     SB_KAFKA_DIR              instead of .cache/infra: kafka/ (configuration),
#                               kafka-data/, kafka.log, kafka-console.log, kafka.pid
#   The jars stay in .cache/kafka/libs, shared.
# - "start" does not wait for the broker to answer: infra.sh does that with a
#   metadata request (kcat -L). Nothing is printed on stdout.
# Needs: java 17 or newer (`java`, or $JAVA), mvn.
set -euo pipefail
exec 1>&2   # diagnostics only: stdout stays clean for infra.sh's callers

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
POM="$ROOT/deploy/local/kafka/pom.xml"
LIBS="$ROOT/.cache/kafka/libs"
MVNLOG="$ROOT/.cache/kafka/mvn.log"
INFRA="${SB_KAFKA_DIR:-$ROOT/.cache/infra}"
CONF="$INFRA/kafka"
DATA="$INFRA/kafka-data"
PIDFILE="$INFRA/kafka.pid"
JAVA="${JAVA:-java}"
PORT="${SB_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${SB_KAFKA_CONTROLLER_PORT:-$((${PORT//[^0-9]/} + 1))}"
HEAP="${SB_KAFKA_HEAP:--Xmx512m}"
# Pinned so Maven does not have to look up the newest plugin on every run.
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

log() { echo "kafka.sh: $*" >&2; }
die() { echo "kafka.sh: error: $*" >&2; exit 1; }

[[ "$PORT" =~ ^[0-9]+$ && "$CONTROLLER_PORT" =~ ^[0-9]+$ ]] \
  || die "SB_KAFKA_PORT / SB_KAFKA_CONTROLLER_PORT must be port numbers"

# Copies the broker's jars from Maven Central into $LIBS unless they are there
# already for this very pom (its checksum is kept in $LIBS/.resolved).
resolve() {
  command -v mvn >/dev/null 2>&1 || die "mvn not found (deploy/local/setup.sh installs maven)"
  local sum
  sum="$(sha256sum "$POM" | cut -d' ' -f1)"
  if [ -f "$LIBS/.resolved" ] && [ "$(cat "$LIBS/.resolved")" = "$sum" ]; then
    return 0
  fi
  local version tmp
  version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")"
  log "resolving Apache Kafka ${version:-?} from Maven Central into ${LIBS#"$ROOT"/} ..."
  tmp="$LIBS.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$(dirname "$LIBS")"
  if ! mvn -B -Dstyle.color=never -f "$POM" "$DEP_PLUGIN:copy-dependencies" \
      -DincludeScope=runtime -DoutputDirectory="$tmp" </dev/null >"$MVNLOG" 2>&1; then
    rm -rf "$tmp"
    grep -E '^\[(ERROR|WARNING)\]' "$MVNLOG" | head -n 30 >&2 || true
    die "Maven could not resolve the Kafka broker (log: $MVNLOG)"
  fi
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "no kafka_2.13 jar was resolved"; }
  echo "$sum" >"$tmp/.resolved"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  log "resolved $(ls "$LIBS"/*.jar | wc -l) jars"
}

check_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (deploy/local/setup.sh installs a JDK)"
  local v major
  v="$("$JAVA" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
  major="${v%%.*}"
  [ "$major" = 1 ] && major="$(echo "$v" | cut -d. -f2)"
  [[ "$major" =~ ^[0-9]+$ ]] || die "cannot tell the Java version from '$JAVA -version'"
  [ "$major" -ge 17 ] || die "the Kafka broker needs Java 17 or newer; '$JAVA' is $v"
}

write_config() {
  mkdir -p "$CONF" "$DATA"
  cat >"$CONF/server.properties" <<EOF
# Written by deploy/local/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  cat >"$CONF/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by deploy/local/kafka.sh: the broker logs to one file. -->
<Configuration status="warn">
  <Appenders>
    <File name="file" fileName="$INFRA/kafka.log" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="org.apache.kafka.clients" level="warn"/>
    <Root level="info">
      <AppenderRef ref="file"/>
    </Root>
  </Loggers>
</Configuration>
EOF
}

kafka_java() {
  "$JAVA" -cp "$LIBS/*" -Dlog4j2.configurationFile="$CONF/log4j2.xml" "$@"
}

# Formats the storage the first time (KRaft needs a cluster id in meta.properties).
format_storage() {
  [ -f "$DATA/meta.properties" ] && return 0
  local id
  id="$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
  [ -n "$id" ] || die "could not generate a cluster id"
  log "formatting ${DATA#"$ROOT"/} (cluster id $id)"
  kafka_java kafka.tools.StorageTool format -t "$id" -c "$CONF/server.properties" \
    >>"$INFRA/kafka-console.log" 2>&1 \
    || { tail -n 20 "$INFRA/kafka-console.log" >&2; die "formatting the Kafka storage failed"; }
}

running() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid="$(cat "$PIDFILE")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
    && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'
}

start() {
  mkdir -p "$INFRA"
  if running; then
    log "already running (pid $(cat "$PIDFILE"))"
    return 0
  fi
  check_java
  resolve
  write_config
  format_storage
  log "starting the broker on 127.0.0.1:$PORT (log: ${INFRA#"$ROOT"/}/kafka.log)"
  cd "$INFRA"
  # setsid: its own session, so a Ctrl-C meant for the caller does not reach it.
  # Every descriptor of the caller is closed or redirected: infra.sh's stdout is
  # read through $(...), which would otherwise wait for the broker to exit.
  # shellcheck disable=SC2086
  setsid "$JAVA" $HEAP -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dkafka.logs.dir="$INFRA" \
    -Dlog4j2.configurationFile="$CONF/log4j2.xml" \
    -cp "$LIBS/*" kafka.Kafka "$CONF/server.properties" \
    </dev/null >>"$INFRA/kafka-console.log" 2>&1 3>&- 9>&- &
  echo $! >"$PIDFILE"
  log "started (pid $!)"
}

case "${1:-start}" in
  resolve) resolve ;;
  start) start ;;
  -h|--help|help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
  *) die "usage: $0 [start|resolve]" ;;
esac
