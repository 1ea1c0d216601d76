#!/usr/bin/env python3
"""Re-runs issue 14's fault scenarios and prints them as a table.

    scripts/fault_scenarios.py [--build DIR] [--list]

Each scenario (the issue's "What failed" list and its "Fault tests" bullet)
is covered by a CTest test: the fault tests carry the label "fault"
(tests/e2e/test_fault_*.py and test_*_faults.py, see tests/CMakeLists.txt);
a scenario may also be covered by a test outside the label (the bad events,
by the dead-letter integration test). This builds the tree (as `make test`
does), brings up PostgreSQL/Redis/Kafka with deploy/local/infra.sh (reusing
running ones; the fault tests start the private servers they stop), runs
`ctest -L fault` plus those other tests, and prints

    scenario | test(s) | PASS / FAIL / NO TEST | seconds

Exit status 0 only when every scenario passed (and every test run did).
--list prints the scenarios and the tests that cover them without running
anything. A failing test's output is printed above the table
(--output-on-failure)."""
import argparse
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# (scenario, regular expression over CTest test names). A row whose
# expression matches no test is reported NO TEST (and fails the run).
SCENARIOS = [
    ("Redis restart: a revoked token stays revoked", r"redis_fault|fault_redis"),
    ("Redis stall: authenticated requests fail fast, no hang", r"redis_fault|fault_redis"),
    ("PostgreSQL restart: no failed request after it is back", r"fault_pg_restart"),
    ("SIGTERM under load: nothing dropped, no 499", r"fault_shutdown"),
    ("Backend down, then back: serving again within 5 s", r"fault_outage"),
    ("Bad events: dead-lettered, not processed, replayable", r"dead_letter|fault_bad_event"),
    ("Broker stopped during approvals: every effect once", r"fault_broker"),
    ("kill -9 of reservation while it applies approvals: exactly once", r"fault_broker"),
]


def ctest_names(build, *args):
    out = subprocess.run(["ctest", "--test-dir", build, "-N", *args], capture_output=True, text=True,
                         check=True).stdout
    return re.findall(r"^\s*Test\s+#\d+: (\S+)", out, re.M)


def infra_env():
    """deploy/local/infra.sh up: DATABASE_URL, REDIS_URL, KAFKA_BROKERS."""
    out = subprocess.run([os.path.join(ROOT, "deploy", "local", "infra.sh"), "up"], stdout=subprocess.PIPE,
                         check=True, text=True).stdout
    env = {}
    for line in out.splitlines():
        name, _, value = line.partition("=")
        if name in ("DATABASE_URL", "REDIS_URL", "KAFKA_BROKERS"):
            env[name] = shlex.split(value)[0] if value else ""
    return env


def run_ctest(build, args, junit, env):
    """Runs ctest with args; returns {test name: (status, seconds)}."""
    path = os.path.join(build, junit)
    if os.path.exists(path):
        os.remove(path)
    subprocess.run(["ctest", "--test-dir", build, "--output-on-failure", "--timeout", "600",
                    "--output-junit", junit, *args], env=env)
    results = {}
    if os.path.exists(path):
        for tc in ET.parse(path).getroot().iter("testcase"):
            results[tc.get("name")] = (tc.get("status"), float(tc.get("time") or 0))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.environ.get("SB_BUILD", "build"), help="build folder (default build)")
    ap.add_argument("--list", action="store_true", help="only list the scenarios and their tests")
    a = ap.parse_args()
    build = os.path.join(ROOT, a.build) if not os.path.isabs(a.build) else a.build

    if not a.list:
        subprocess.run(["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
                       stdout=subprocess.DEVNULL, check=True)
        subprocess.run(["cmake", "--build", build, f"-j{os.cpu_count() or 2}"], check=True)
    elif not os.path.exists(os.path.join(build, "CTestTestfile.cmake")):
        sys.exit(f"fault_scenarios: no CTest tree in {build}: build first (make build)")

    everything = ctest_names(build)
    labelled = [t for t in ctest_names(build, "-L", "fault") if t != "pki/ensure"]
    rows = [(s, [t for t in everything if re.search(rx, t)]) for s, rx in SCENARIOS]
    outside = sorted({t for _, ts in rows for t in ts} - set(labelled))

    results = {}
    if not a.list:
        env = dict(os.environ, **infra_env())
        results.update(run_ctest(build, ["-L", "fault"], "fault-scenarios.xml", env))
        if outside:
            results.update(run_ctest(build, ["-R", "^(" + "|".join(map(re.escape, outside)) + ")$"],
                                     "fault-scenarios-more.xml", env))

    width = max(len(s) for s, _ in rows)
    print(f"\n{'scenario':<{width}} | {'result':<7} | {'s':>6} | tests")
    print(f"{'-' * width}-+-{'-' * 7}-+-{'-' * 6}-+------")
    ok = True
    for scenario, tests in rows:
        if not tests:
            verdict, secs = "NO TEST", 0.0
        elif a.list:
            verdict, secs = "", 0.0
        else:
            got = [results.get(t, ("notrun", 0.0)) for t in tests]
            verdict = "PASS" if all(st == "run" for st, _ in got) else "FAIL"
            secs = sum(s for _, s in got)
        ok &= verdict == "PASS"
        print(f"{scenario:<{width}} | {verdict:<7} | {secs:6.1f} | {', '.join(tests) or '-'}")
    others = [t for t in labelled if not any(t in ts for _, ts in rows)]
    if others:
        print(f"fault tests not in the table: {', '.join(others)}"
              + ("" if a.list else " (" + ", ".join(f"{t} {results.get(t, ('notrun',))[0]}" for t in others) + ")"))
    if a.list:
        return 0
    failed = sorted(t for t, (st, _) in results.items() if st != "run")
    ok &= not failed
    print(f"\nfault_scenarios: {'every scenario passed' if ok else 'NOT every scenario passed'}"
          + (f"; failed: {', '.join(failed)} (their output is above)" if failed else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
