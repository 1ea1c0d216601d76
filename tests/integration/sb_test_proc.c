/* Service binaries as child processes of the integration tests (see
 * sb_test_proc.h). No gRPC and no Criterion here: the runner process calls
 * most of it, and a child between fork and exec only makes system calls. */
#define _GNU_SOURCE /* program_invocation_short_name */
#include "sb_test_proc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sb/events.h"
#include "sb_test_pki.h"

extern char **environ;

#define PROG program_invocation_short_name

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- reaping ----
 *
 * A child is reaped as soon as it exits and its status kept here for
 * sb_test_stop / sb_test_wait_exit. A zombie must not linger in the runner:
 * Criterion's worker pump (BoxFort) waits with waitid(P_ALL, WNOWAIT), which
 * keeps returning a zombie that is not one of its workers, so the run would
 * spin until CTest's timeout. A SIGCHLD handler therefore reaps the children
 * started here (only those) whenever one ends, also while tests run. */

#define MAX_KIDS 64
static struct kid {
    atomic_int pid;    /* 0: free slot */
    atomic_int state;  /* 0: running, 1: reaped (status valid) */
    atomic_int status; /* as from waitpid */
} kid_table[MAX_KIDS];
static struct sigaction prev_chld;

static struct kid *kid_of(pid_t pid)
{
    for (size_t i = 0; i < MAX_KIDS; i++)
        if (atomic_load(&kid_table[i].pid) == pid)
            return &kid_table[i];
    return NULL;
}

/* Reaps k's process if it has ended (async-signal-safe). */
static void kid_reap(struct kid *k)
{
    pid_t pid = atomic_load(&k->pid);
    int status;
    if (pid > 0 && !atomic_load(&k->state) && waitpid(pid, &status, WNOHANG) == pid) {
        atomic_store(&k->status, status);
        atomic_store(&k->state, 1);
    }
}

static void on_sigchld(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    for (size_t i = 0; i < MAX_KIDS; i++)
        kid_reap(&kid_table[i]);
    errno = saved;
    if ((prev_chld.sa_flags & SA_SIGINFO) && prev_chld.sa_sigaction)
        prev_chld.sa_sigaction(sig, si, uc);
    else if (!(prev_chld.sa_flags & SA_SIGINFO) && prev_chld.sa_handler != SIG_DFL &&
             prev_chld.sa_handler != SIG_IGN)
        prev_chld.sa_handler(sig);
}

static void reaper_install(void)
{
    static bool installed;
    if (installed)
        return;
    installed = true;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigchld;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, &prev_chld);
}

static void kid_add(pid_t pid)
{
    for (size_t i = 0; i < MAX_KIDS; i++) {
        int free_slot = 0;
        if (atomic_load(&kid_table[i].pid) == 0) {
            atomic_store(&kid_table[i].state, 0);
            atomic_store(&kid_table[i].status, 0);
            if (atomic_compare_exchange_strong(&kid_table[i].pid, &free_slot, pid)) {
                kid_reap(&kid_table[i]); /* it may have ended before it was listed */
                return;
            }
        }
    }
    /* table full: reaped by the waits below only */
}

/* Whether pid has ended; its waitpid status into *status. *known is false
 * when pid is not (or no longer) a child whose status can be had. */
static bool ended(pid_t pid, int *status, bool *known)
{
    *known = true;
    struct kid *k = kid_of(pid);
    if (k) {
        kid_reap(k);
        if (atomic_load(&k->state)) {
            *status = atomic_load(&k->status);
            return true;
        }
        /* the handler may be between its waitpid and recording the status */
        if (kill(pid, 0) != 0 && errno == ESRCH) {
            for (int i = 0; i < 1000 && !atomic_load(&k->state); i++)
                usleep(1000);
            *known = atomic_load(&k->state) != 0;
            *status = atomic_load(&k->status);
            return true;
        }
        return false;
    }
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid)
        return true;
    if (r < 0 && errno == ECHILD && kill(pid, 0) != 0) {
        *known = false; /* reaped elsewhere and gone */
        return true;
    }
    return false;
}

/* Whether pid was already reaped (so must not be signalled: its number may
 * be another process's by now). */
static bool reaped(pid_t pid)
{
    struct kid *k = kid_of(pid);
    return k && atomic_load(&k->state);
}

static void kid_forget(pid_t pid)
{
    struct kid *k = kid_of(pid);
    if (k)
        atomic_store(&k->pid, 0);
}

static int exit_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

const char *sb_test_bin(const char *svc, char *out, size_t n)
{
    char var[64];
    size_t k = (size_t)snprintf(var, sizeof var, "SB_%s_BIN", svc);
    for (size_t i = 3; i < k && i < sizeof var; i++)
        var[i] = (char)toupper((unsigned char)var[i]);
    const char *bin = getenv(var);
    if (bin && *bin) {
        snprintf(out, n, "%s", bin);
        return out;
    }
    const char *dir = getenv("SB_BIN_DIR");
    snprintf(out, n, "%s/services/%s/sb-%s", dir && *dir ? dir : "..", svc, svc);
    return out;
}

/* environ with `overrides` ("K=V", NULL-terminated) replacing the same keys.
 * Heap array of borrowed strings; the caller frees the array only. */
static char **child_env(const char *const *overrides)
{
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    while (overrides[k])
        k++;
    char **env = calloc(n + k + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        bool replaced = false;
        for (size_t j = 0; j < k && !replaced; j++) {
            size_t kl = strcspn(overrides[j], "=");
            replaced = !strncmp(environ[i], overrides[j], kl) && environ[i][kl] == '=';
        }
        if (!replaced)
            env[m++] = environ[i];
    }
    for (size_t j = 0; j < k; j++)
        env[m++] = (char *)overrides[j];
    return env;
}

pid_t sb_test_spawn(const char *svc, const char *const *overrides, const char *log_path)
{
    char bin[4096];
    sb_test_bin(svc, bin, sizeof bin);
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "%s: service binary %s: %s (set SB_BIN_DIR to the build directory)\n", PROG, bin,
                strerror(errno));
        return -1;
    }
    /* plus SB_NAMESPACE=<the tests' namespace> and the service's identity
     * (sb_test_pki_child_env), each unless the caller sets the same key */
    enum { N_PKI = 8 };
    char pki[N_PKI][SB_TEST_PKI_VAR_MAX];
    size_t n_pki = sb_test_pki_child_env(svc, pki, N_PKI);
    char ns_var[64];
    snprintf(ns_var, sizeof ns_var, "SB_NAMESPACE=%s", sb_test_namespace());
    const char *defaults[N_PKI + 1];
    defaults[0] = ns_var;
    for (size_t i = 0; i < n_pki; i++)
        defaults[1 + i] = pki[i];
    size_t k = 0;
    while (overrides && overrides[k])
        k++;
    const char **set = calloc(k + n_pki + 2, sizeof *set);
    if (!set)
        return -1;
    size_t m = 0;
    for (size_t i = 0; i < n_pki + 1; i++) {
        size_t kl = strcspn(defaults[i], "=") + 1; /* "KEY=" */
        bool own = false;
        for (size_t j = 0; j < k && !own; j++)
            own = !strncmp(overrides[j], defaults[i], kl);
        if (!own)
            set[m++] = defaults[i];
    }
    for (size_t j = 0; j < k; j++)
        set[m++] = overrides[j];
    char **env = child_env(set);
    free(set);
    if (!env)
        return -1;
    char *argv[] = {bin, NULL};
    /* everything the child needs is ready before fork: the caller may have
     * threads (a test process with gRPC channels), so the child only makes
     * async-signal-safe calls until exec */
    char failed[4200];
    int failed_len = snprintf(failed, sizeof failed, "%s: cannot start %s\n", PROG, bin);
    if (failed_len < 0 || (size_t)failed_len >= sizeof failed)
        failed_len = (int)sizeof failed - 1;
    pid_t parent = getpid();
    reaper_install();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the runner or test */
        if (getppid() != parent)          /* it died before prctl */
            _exit(127);
        if (log_path) {
            int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (fd < 0 || (fd != STDERR_FILENO && dup2(fd, STDERR_FILENO) < 0))
                _exit(127);
            if (fd != STDERR_FILENO)
                close(fd);
        }
        execve(bin, argv, env);
        if (write(STDERR_FILENO, failed, (size_t)failed_len) < 0)
            _exit(127);
        _exit(127);
    }
    int e = errno;
    free(env); /* the child has its own copy */
    if (pid < 0) {
        fprintf(stderr, "%s: fork for %s: %s\n", PROG, bin, strerror(e));
        return -1;
    }
    kid_add(pid);
    return pid;
}

bool sb_test_readyz(int admin_port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)admin_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = false;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        static const char req[] = "GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        char buf[64] = "";
        size_t got = 0;
        if (write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1)) {
            while (got < 12) { /* "HTTP/1.x 200" */
                ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
                if (r <= 0)
                    break;
                got += (size_t)r;
            }
        }
        ok = got >= 12 && strncmp(buf, "HTTP/1.", 7) == 0 && strncmp(buf + 9, "200", 3) == 0;
    }
    close(fd);
    return ok;
}

static void describe_exit(int status, char *out, size_t n)
{
    if (WIFEXITED(status))
        snprintf(out, n, "exit code %d", WEXITSTATUS(status));
    else
        snprintf(out, n, "signal %d, %s", WTERMSIG(status), strsignal(WTERMSIG(status)));
}

bool sb_test_wait_ready(pid_t pid, int admin_port, int timeout_ms, char *why, size_t n)
{
    if (pid <= 0) {
        snprintf(why, n, "not started");
        return false;
    }
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int status = 0;
        bool known;
        if (ended(pid, &status, &known)) {
            char how[96] = "status unknown";
            if (known)
                describe_exit(status, how, sizeof how);
            snprintf(why, n, "exited during start-up (%s)", how);
            return false;
        }
        if (sb_test_readyz(admin_port))
            return true;
        if (now_ms() >= deadline) {
            snprintf(why, n, "not ready on admin port %d after %d s", admin_port, timeout_ms / 1000);
            return false;
        }
        usleep(100 * 1000);
    }
}

/* sb_test_wait_exit; *timed_out tells a SIGKILL after the timeout apart from
 * an unknown status. */
static int wait_exit(pid_t pid, int timeout_ms, bool *timed_out)
{
    *timed_out = false;
    if (pid <= 0)
        return -1;
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int status = 0;
        bool known;
        if (ended(pid, &status, &known)) {
            kid_forget(pid);
            return known ? exit_code(status) : -1;
        }
        if (now_ms() >= deadline)
            break;
        usleep(50 * 1000);
    }
    *timed_out = true;
    kill(pid, SIGKILL);
    for (;;) { /* SIGKILL cannot be refused: it ends */
        int status;
        bool known;
        if (ended(pid, &status, &known))
            break;
        usleep(10 * 1000);
    }
    kid_forget(pid);
    return -1;
}

int sb_test_wait_exit(pid_t pid, int timeout_ms)
{
    bool timed_out;
    return wait_exit(pid, timeout_ms, &timed_out);
}

int sb_test_stop(pid_t pid, const char *name, int timeout_ms)
{
    if (pid <= 0)
        return 0;
    if (!reaped(pid))
        kill(pid, SIGTERM);
    bool timed_out;
    int rc = wait_exit(pid, timeout_ms, &timed_out);
    if (timed_out)
        fprintf(stderr, "%s: %s did not stop within %d s of SIGTERM; killed\n", PROG, name,
                timeout_ms / 1000);
    else if (rc < 0)
        fprintf(stderr, "%s: %s: exit status unknown (reaped elsewhere)\n", PROG, name);
    else if (rc >= 128)
        fprintf(stderr, "%s: %s ended by signal %d (%s)%s\n", PROG, name, rc - 128, strsignal(rc - 128),
                rc - 128 == SIGABRT ? ": an assertion or sanitizer report? see its stderr" : "");
    else if (rc != 0)
        fprintf(stderr, "%s: %s stopped with exit code %d\n", PROG, name, rc);
    return rc;
}

void sb_test_set_ready(const char *env_name, const char *why)
{
    if (why)
        fprintf(stderr, "%s: not started: %s\n", PROG, why);
    setenv(env_name, why ? why : "1", 1);
}

bool sb_test_await_ready(const char *env_name, const sb_test_child_t *kids, size_t n, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (size_t i = 0; i < n; i++) {
        char why[128], msg[256];
        int64_t left = deadline - now_ms();
        if (kids[i].pid <= 0)
            snprintf(why, sizeof why, "did not start (set SB_BIN_DIR to the build directory)");
        else if (sb_test_wait_ready(kids[i].pid, kids[i].admin_port, left > 0 ? (int)left : 0, why,
                                    sizeof why))
            continue;
        snprintf(msg, sizeof msg, "%s %s%s", kids[i].name, why,
                 strncmp(why, "exited", 6) ? "" : " (is Kafka up?)");
        sb_test_set_ready(env_name, msg);
        return false;
    }
    sb_test_set_ready(env_name, NULL);
    return true;
}

const char *sb_test_not_ready(const char *env_name)
{
    const char *v = getenv(env_name);
    if (!v)
        return "no word from the runner (its PRE_ALL hook did not run)";
    return strcmp(v, "1") ? v : NULL;
}

const char *sb_test_namespace(void)
{
    const char *ns = getenv("SB_NAMESPACE");
    return ns ? ns : "test";
}

bool sb_test_namespace_init(void)
{
    return sb_namespace_set(sb_test_namespace());
}

const char *sb_test_db(const char *svc, char *out, size_t n)
{
    const char *ns = sb_test_namespace();
    snprintf(out, n, "sb_%s%s%s", svc, *ns ? "_" : "", ns);
    return out;
}
