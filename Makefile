# Thin wrapper over CMake and the scripts in scripts/. See README.md.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all setup build test test-sanitize fault-scenarios fuzz bench bench-identity bench-flash bench-booking run infra-up infra-down clean format format-check

all: build

setup:
	@deploy/local/setup.sh

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# Builds, brings up PostgreSQL/Redis/Kafka (reusing running ones), runs every test.
test:
	@scripts/test.sh

# The same suite built with -fsanitize=address,undefined (what CI also runs).
test-sanitize:
	@SB_BUILD=build-asan SB_CMAKE_FLAGS="-DSB_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug" scripts/test.sh

# Issue 14's fault scenarios (ctest -L fault and the tests of the other rows) as a table.
fault-scenarios:
	@scripts/fault_scenarios.py

# libFuzzer (clang, ASan+UBSan) on every harness for FUZZ_SECONDS each; new
# inputs go to build-fuzz/corpus-*, crashes to build-fuzz/crash-*.
FUZZ_SECONDS ?= 60
fuzz: setup
	@CC=clang cmake -S . -B build-fuzz -DSB_FUZZ=ON -DSB_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build-fuzz -j$(JOBS) --target fuzz_http fuzz_json fuzz_jwt
	@for h in http json jwt; do mkdir -p build-fuzz/corpus-$$h; \
	  build-fuzz/tests/fuzz/fuzz_$$h -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=build-fuzz/crash-$$h- build-fuzz/corpus-$$h tests/fuzz/corpus/$$h 2>&1 | \
	    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY)|Done [0-9]+ runs' | sed "s/^/fuzz_$$h: /"; \
	done

# Side-by-side gateway benchmark (issue 13): our gateway vs grpc-gateway
# (built from proto/ by bench/grpcgw/build.sh, Debian packages installed at
# bench time) vs direct gRPC vs an nginx fixed-JSON ceiling, at 64/256/1,024
# connections, authenticated read, public read, flash-sale hold, in
# interleaved rounds; then our gateway's RSS at 10,000 idle connections.
# docs/benchmarks.md. E2e test ports: flock /tmp/sb-test.lock make bench.
# BENCH_ARGS="--quick" for a smoke run, "--rounds 5 --duration 8" for more.
bench: build
	@infra_env="$$(deploy/local/infra.sh up)" && eval "$$infra_env" && export DATABASE_URL REDIS_URL KAFKA_BROKERS && \
	  python3 bench/gateway_compare.py $(BENCH_ARGS)

# Identity benchmark (issue 3): gateway vs direct gRPC vs /healthz at 64
# connections; docs/benchmarks.md.
bench-identity: build
	@infra_env="$$(deploy/local/infra.sh up)" && eval "$$infra_env" && export DATABASE_URL REDIS_URL KAFKA_BROKERS && \
	  python3 bench/identity.py $(BENCH_SECONDS) $(BENCH_RUNS)

# Flash-sale benchmark (issue 10): 10,000 buyers, 1,000 seats, 64/256/1,024
# connections, REST and direct gRPC, chosen seats and best available, and
# pgbench on the same SQL; docs/benchmarks.md. Uses the e2e test ports (on a
# shared machine: flock /tmp/sb-test.lock make bench-flash).
# BENCH_FLASH_ARGS="--runs 3" for medians.
bench-flash: build
	@infra_env="$$(deploy/local/infra.sh up)" && eval "$$infra_env" && export DATABASE_URL REDIS_URL KAFKA_BROKERS && \
	  python3 bench/flash_sale.py $(BENCH_FLASH_ARGS)

# Booking-flow benchmark (issue 11): 1,000 bookings at 64 connections through
# the gateway, each hold -> pay (sb-paysim) -> CONFIRMED; docs/benchmarks.md.
# E2e test ports: flock /tmp/sb-test.lock make bench-booking.
# BENCH_BOOKING_ARGS="--runs 3" for medians.
bench-booking: build
	@infra_env="$$(deploy/local/infra.sh up)" && eval "$$infra_env" && export DATABASE_URL REDIS_URL KAFKA_BROKERS && \
	  python3 bench/booking_flow.py $(BENCH_BOOKING_ARGS)

# The whole platform in the foreground; Ctrl-C stops everything it started.
run:
	@scripts/run.sh

infra-up:
	@deploy/local/infra.sh up >/dev/null

infra-down:
	@deploy/local/infra.sh down

# clang-format (Debian clang-format 14) over every tracked C file; format-check
# fails, listing the files, when any differs from what format would make.
format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@bad=$$(for f in $$(git ls-files '*.c' '*.h'); do clang-format "$$f" | cmp -s - "$$f" || echo "$$f"; done); \
	  if [ -n "$$bad" ]; then echo "format-check: not formatted (run make format):" $$bad >&2; exit 1; fi

clean:
	rm -rf build build-asan build-fuzz
