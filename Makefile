# Thin wrapper over CMake and the scripts in scripts/. See README.md.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all setup build test test-sanitize run infra-up infra-down clean format

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

# The whole platform in the foreground; Ctrl-C stops everything it started.
run:
	@scripts/run.sh

infra-up:
	@deploy/local/infra.sh up >/dev/null

infra-down:
	@deploy/local/infra.sh down

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz
