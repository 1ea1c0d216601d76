#!/usr/bin/env bash
# make test: install what is missing, build, bring up the real PostgreSQL,
# Redis and Kafka (reusing running ones), run every CTest test, and stop the
# servers this run started (unless SB_KEEP_INFRA=1).
#   SB_BUILD        build folder (default build)
#   SB_CMAKE_FLAGS  extra CMake flags (the sanitizer run sets -DSB_SANITIZE=ON)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BUILD="${SB_BUILD:-build}"

deploy/local/setup.sh
# shellcheck disable=SC2086
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${SB_CMAKE_FLAGS:-} >/dev/null
cmake --build "$BUILD" -j"$(nproc)"

# the OpenAPI validator the e2e tests use (npm, pinned by tests/openapi/package-lock.json)
if [ ! -d "$BUILD/openapi/node_modules/@apidevtools" ]; then
  mkdir -p "$BUILD/openapi"
  cp tests/openapi/package.json tests/openapi/package-lock.json "$BUILD/openapi/"
  npm ci --prefix "$BUILD/openapi" --no-audit --no-fund --loglevel=error >&2
fi
cp tests/openapi/validate.mjs "$BUILD/openapi/"

infra_env="$(deploy/local/infra.sh up)"
eval "$infra_env"
export DATABASE_URL REDIS_URL KAFKA_BROKERS SB_INFRA_STARTED
if [ "${SB_KEEP_INFRA:-0}" != 1 ]; then
  trap 'deploy/local/infra.sh down' EXIT
fi

# Every run is a fresh-machine run: the test namespace's databases
# (sb_<service>_test) are dropped first, so the services create and migrate
# them from nothing, as on a new machine (the first-run path must not only
# work the second time).
psql "$DATABASE_URL" -qAtX -c "SELECT datname FROM pg_database WHERE datname LIKE 'sb\_%\_test'" |
  while read -r db; do
    psql "$DATABASE_URL" -qX -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
  done

# The tests' PKI (<build>/pki: CA, a certificate per service, the token
# signing key) is made by CTest itself, the fixture pki/ensure that every
# integration and e2e test requires (tests/CMakeLists.txt).
# ... and so are its Kafka topics (sb.<x>.test and the per-test namespaces
# sb.<x>.test_<id>): deleted with Kafka's own TopicCommand (the broker's jars,
# resolved by deploy/local/kafka.sh from the Maven cache), then waited for, so
# no event of an earlier run is on them. The consumer groups' offsets of a
# deleted topic go with it.
kafka_topics() {
  java -cp "$ROOT/.cache/kafka/libs/*" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "${KAFKA_BROKERS%%,*}" "$@" 2>/dev/null
}
if deploy/local/kafka.sh resolve >/dev/null 2>&1; then
  kafka_topics --delete --if-exists --topic 'sb\..*\.test.*' || true
  for _ in $(seq 1 30); do
    kafka_topics --list | grep -qE '^sb\..*\.test' || break
    sleep 1
  done
  kafka_topics --list | grep -qE '^sb\..*\.test' && echo "make test: some sb.*.test topics are still being deleted" >&2
else
  echo "make test: cannot resolve Kafka's tools; the test topics are reused" >&2
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp:print_suppressions=0}"
start=$(date +%s)
ctest --test-dir "$BUILD" --output-on-failure --timeout 600
echo "make test: all tests passed in $(( $(date +%s) - start )) s (build: $BUILD)"
