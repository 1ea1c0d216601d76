/* Service binaries as child processes of the integration tests.
 *
 * A test's runner process starts the service(s) once in a PRE_ALL report
 * hook and stops them in POST_ALL; Criterion runs every test in a fresh
 * process that inherits only the runner's environment, so readiness is
 * handed over through an environment variable (sb_test_set_ready /
 * sb_test_not_ready). The runner never loads gRPC (its test processes are
 * forked from it): readiness is GET /readyz on the service's admin port,
 * which answers 200 only once the gRPC server is up and the database and
 * Redis answer.
 *
 * Children get the runner's environment (DATABASE_URL and the rest carry
 * over) with SB_NAMESPACE set to the tests' namespace (sb_test_namespace),
 * their own identity from the tests' PKI (certificate, CA, public keys, and
 * for auth the signing key: sb_test_pki_child_env in sb_test_pki.h) and
 * "K=V" overrides replacing the same keys.
 *
 * Namespace: the tests run in namespace "test" (CTest sets SB_NAMESPACE=test;
 * a test binary run by hand without SB_NAMESPACE uses "test" too), so the
 * services they start use databases sb_<svc>_test, consumer groups
 * sb-<svc>.test and topics sb.<x>.test and never touch `make run`'s. Set
 * SB_NAMESPACE= (empty) on purpose to use the default namespace. */
#ifndef SB_TEST_PROC_H
#define SB_TEST_PROC_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Path of sb-<svc>: $SB_<SVC>_BIN if set (e.g. SB_MEMBER_BIN), else
 * $SB_BIN_DIR/services/<svc>/sb-<svc>, by default relative to ctest's
 * working directory build/tests ("../services/<svc>/sb-<svc>"). Returns out. */
const char *sb_test_bin(const char *svc, char *out, size_t n);

/* Starts sb-<svc> with the runner's environment, SB_NAMESPACE=
 * sb_test_namespace(), svc's TLS_* / JWT_* variables (sb_test_pki_child_env)
 * and `overrides` ("K=V", NULL-terminated; NULL for none) replacing the same
 * keys ("JWT_SIGNING_KEY_FILE=" sets it empty). Its stderr goes to
 * log_path (created or truncated) when that is non-NULL, else it is shared.
 * The child gets SIGTERM when the thread that started it dies, so it never
 * outlives a crashed runner or test. Returns the pid, or -1 with a message on
 * stderr when the binary is missing or fork fails.
 *
 * The first call installs a SIGCHLD handler that reaps the children started
 * here as soon as they end and keeps their status for the calls below: a
 * zombie left in the runner would make Criterion's worker pump spin (it
 * waits with waitid(P_ALL, WNOWAIT)) and hang the run. */
pid_t sb_test_spawn(const char *svc, const char *const *overrides, const char *log_path);

/* Polls GET /readyz on 127.0.0.1:admin_port every 100 ms until it answers
 * 200 (true). false with the reason in why (n bytes) when pid exits first
 * ("exited during start-up (exit code 1)") or timeout_ms passes. */
bool sb_test_wait_ready(pid_t pid, int admin_port, int timeout_ms, char *why, size_t n);

/* true when GET /readyz on 127.0.0.1:admin_port answers 200 right now. */
bool sb_test_readyz(int admin_port);

/* Waits up to timeout_ms for pid to exit, without signalling it. Returns its
 * exit code, 128 + the signal that ended it, or -1 when it was still running
 * (it is then killed with SIGKILL and reaped) or its status is unknown. */
int sb_test_wait_exit(pid_t pid, int timeout_ms);

/* Stops pid: SIGTERM, sb_test_wait_exit(timeout_ms). Anything but exit code 0
 * (a crash, a sanitizer or leak report's abort, a SIGKILL after the timeout)
 * is reported on stderr naming `name`. Returns what sb_test_wait_exit
 * returned; 0 for pid <= 0 (nothing to stop). */
int sb_test_stop(pid_t pid, const char *name, int timeout_ms);

/* The runner's side of the hand-over: env_name becomes "1" when why is NULL,
 * else why (also printed on stderr). */
void sb_test_set_ready(const char *env_name, const char *why);

/* A started child as the runner waits for it. */
typedef struct {
    pid_t pid;
    int admin_port;
    const char *name; /* in messages: "sb-auth (broken)" */
} sb_test_child_t;

/* sb_test_wait_ready for every child in turn, timeout_ms for them all, then
 * sb_test_set_ready(env_name): NULL when all are ready, else "<name> <why>"
 * for the first that is not (a pid <= 0 is "did not start"). Returns whether
 * all are ready. */
bool sb_test_await_ready(const char *env_name, const sb_test_child_t *kids, size_t n, int timeout_ms);
/* The test's side: NULL when env_name says "1", else the reason. */
const char *sb_test_not_ready(const char *env_name);

/* The namespace the tests run in: $SB_NAMESPACE, "test" when unset. */
const char *sb_test_namespace(void);
/* sb_namespace_set(sb_test_namespace()) for this process, so that
 * sb_topic_name / sb_event_topic name the topics the children use. */
bool sb_test_namespace_init(void);
/* Database of service svc in that namespace, as the service names it:
 * "sb_<svc>" or "sb_<svc>_<namespace>". Returns out. */
const char *sb_test_db(const char *svc, char *out, size_t n);

#endif
