/* The job runtime: a thread per job row, ticks under an advisory lock. See
 * sb/jobs.h.
 *
 * Design: each job thread owns one connection outside the pool, for three
 * things at once: it LISTENs on the job's channel, it holds the job's
 * session lock when the job is a session job, and it runs the ticks. A job
 * therefore never competes with RPCs for pooled connections, and a tick never
 * leaves a pooled connection in a transaction.
 *
 * Exclusion comes from PostgreSQL, not from this process: a transaction job
 * takes pg_try_advisory_xact_lock(key) as the first statement of each tick
 * (released by COMMIT or ROLLBACK, so a dead runner holds nothing); a session
 * job takes pg_try_advisory_lock(key) once and keeps it while its connection
 * lives. The key is the job's name hashed (SB_LOCK_JOB) or a fixed key from
 * sb/locks.h; it is resolved to a bigint once per connection.
 *
 * Waking: between ticks the thread polls its connection's socket in 50 ms
 * slices (so a stop is seen at once); a NOTIFY on the channel ends the wait.
 * Notifications that arrive during a tick are queued by libpq and end the
 * next wait at once, so a wake-up is never lost. After a failure the thread
 * waits out its backoff even when woken. A broken connection is replaced (and
 * a session job's leadership with it, which another replica may have taken
 * meanwhile). */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sb/alloc.h"
#include "sb/jobs.h"
#include "sb/locks.h"
#include "sb/log.h"
#include "sb/metrics.h"

#define MAX_BACKOFF_MS 5000

struct runner {
    struct sb_jobs *owner;
    sb_job_t job;
    pthread_t thread;
    sb_pg_conn_t *conn; /* NULL: not connected */
    char key[24];       /* the lock key as bigint text, resolved on connect */
    bool leader;        /* a session job holding its lock on conn */
};

struct sb_jobs {
    sb_pg_pool_t *pool;
    void *arg;
    atomic_bool stop;
    size_t n;
    struct runner *runners;
};

static const sb_pg_stmt_t stmt_key_of_name = {"sb_job_key", "SELECT " SB_LOCK_JOB("$1") "::text"};
static const sb_pg_stmt_t stmt_xact_lock = {"sb_job_xact_lock",
                                            "SELECT pg_try_advisory_xact_lock($1::bigint)"};
static const sb_pg_stmt_t stmt_session_lock = {"sb_job_session_lock",
                                               "SELECT pg_try_advisory_lock($1::bigint)"};

static bool stopping(const struct runner *r)
{
    return atomic_load(&r->owner->stop);
}

static void disconnect(struct runner *r)
{
    if (r->leader)
        sb_info("job %s: leadership ends with its connection", r->job.name);
    sb_pg_conn_free(r->conn);
    r->conn = NULL;
    r->leader = false;
}

/* A fresh connection: LISTEN on the channel, the lock key resolved. */
static bool connect_runner(struct runner *r)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_arena_t *a = sb_arena_new();
    r->conn = sb_pg_conn_new(r->owner->pool, &err);
    bool ok = r->conn != NULL;
    sb_db_t db = {r->conn, a, &err};
    if (ok && r->job.channel) {
        char *ident = PQescapeIdentifier(sb_pg_raw(r->conn), r->job.channel, strlen(r->job.channel));
        ok = ident && sb_db_sql(&db, sb_arena_printf(a, "LISTEN %s", ident), NULL) == SB_OK;
        PQfreemem(ident);
    }
    PGresult *res;
    if (ok && r->job.lock_key)
        snprintf(r->key, sizeof r->key, "%s", r->job.lock_key);
    else if (ok && (ok = sb_db_exec(&db, &stmt_key_of_name, &res, r->job.name) == SB_OK))
        snprintf(r->key, sizeof r->key, "%s", PQgetvalue(res, 0, 0));
    sb_arena_free(a);
    if (!ok) {
        sb_warn("job %s: no connection: %s", r->job.name, err.buf);
        disconnect(r);
    }
    sb_buf_release(&err);
    return ok;
}

/* Takes the job's lock (the transaction's, or the session's unless already
 * leader); *got says whether it is ours. */
static sb_status_t take_lock(struct runner *r, sb_db_t *db, bool *got)
{
    if (r->job.session && r->leader) {
        *got = true;
        return SB_OK;
    }
    PGresult *res;
    sb_status_t st = sb_db_exec(db, r->job.session ? &stmt_session_lock : &stmt_xact_lock, &res, r->key);
    *got = st == SB_OK && !strcmp(PQgetvalue(res, 0, 0), "t");
    if (*got && r->job.session) {
        r->leader = true;
        sb_info("job %s: this replica is the leader", r->job.name);
    }
    return st;
}

/* One tick. OK with *ran false when another replica holds the lock. */
static sb_status_t tick(struct runner *r, bool final, bool *ran, bool *again)
{
    sb_buf_t detail = SB_BUF_INIT;
    sb_arena_t *a = sb_arena_new();
    sb_db_t db = {r->conn, a, &detail};
    sb_job_ctx_t ctx = {&r->job, &db, a, r->owner->arg, &r->owner->stop, final, false};
    atomic_bool never = false;
    if (final)
        ctx.stopping = &never; /* the final tick is the flush: let it finish */
    *ran = false;
    sb_status_t st = r->job.session ? SB_OK : sb_db_sql(&db, "BEGIN", NULL);
    if (st == SB_OK)
        st = take_lock(r, &db, ran);
    if (st == SB_OK && *ran)
        st = r->job.fn(&ctx);
    PGTransactionStatusType ts = PQtransactionStatus(sb_pg_raw(r->conn));
    if (st == SB_OK && ts == PQTRANS_INTRANS)
        st = sb_db_sql(&db, "COMMIT", NULL);
    else if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
        PQclear(PQexec(sb_pg_raw(r->conn), "ROLLBACK"));
    if (st != SB_OK) {
        sb_error("job %s: tick failed (%s): %s", r->job.name, sb_status_name(st), detail.buf);
        sb_metrics_count("sb_job_failures_total", 1);
    }
    *again = ctx.again;
    sb_arena_free(a);
    sb_buf_release(&detail);
    return st;
}

/* Drops the notifications libpq has queued; true if there were any. */
static bool drain_notifies(PGconn *c)
{
    bool any = false;
    PGnotify *n;
    while ((n = PQnotifies(c))) {
        any = true;
        PQfreemem(n);
    }
    return any;
}

/* Waits up to ms, ended early by a NOTIFY when listen is set, or by a stop. */
static void wait_tick(struct runner *r, int ms, bool listen)
{
    PGconn *c = r->conn && listen && r->job.channel ? sb_pg_raw(r->conn) : NULL;
    if (c && drain_notifies(c))
        return; /* arrived during the tick */
    for (int waited = 0; waited < ms && !stopping(r); waited += 50) {
        int slice = ms - waited < 50 ? ms - waited : 50;
        if (!c) {
            usleep((useconds_t)slice * 1000);
            continue;
        }
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        if (poll(&pfd, 1, slice) <= 0)
            continue;
        if (!PQconsumeInput(c) || drain_notifies(c))
            return; /* woken, or broken (the loop reconnects) */
    }
}

static void *runner_main(void *arg)
{
    struct runner *r = arg;
    int every = r->job.every_ms > 0 ? r->job.every_ms : 1000, backoff = every;
    while (!stopping(r)) {
        if (r->conn && PQstatus(sb_pg_raw(r->conn)) != CONNECTION_OK)
            disconnect(r);
        if (!r->conn && !connect_runner(r)) {
            backoff = backoff < MAX_BACKOFF_MS / 2 ? backoff * 2 : MAX_BACKOFF_MS;
            wait_tick(r, backoff, false);
            continue;
        }
        bool ran, again;
        if (tick(r, false, &ran, &again) != SB_OK) {
            backoff = backoff < MAX_BACKOFF_MS / 2 ? backoff * 2 : MAX_BACKOFF_MS;
            wait_tick(r, backoff, false);
            continue;
        }
        backoff = every;
        if (!(ran && again))
            wait_tick(r, every, true);
    }
    if (r->job.final_tick && (r->conn || connect_runner(r))) {
        bool ran, again;
        tick(r, true, &ran, &again);
    }
    disconnect(r);
    return NULL;
}

sb_jobs_t *sb_jobs_start(sb_pg_pool_t *pool, const sb_job_t *jobs, size_t n, void *arg, sb_buf_t *err)
{
    for (size_t i = 0; i < n; i++)
        if (!jobs[i].name || !*jobs[i].name || !jobs[i].fn) {
            sb_buf_addf(err, "job row %zu needs a name and a function", i);
            return NULL;
        }
    sb_jobs_t *j = sb_calloc(1, sizeof *j);
    j->pool = pool;
    j->arg = arg;
    j->n = n;
    j->runners = sb_calloc(n ? n : 1, sizeof *j->runners);
    for (size_t i = 0; i < n; i++) {
        struct runner *r = &j->runners[i];
        r->owner = j;
        r->job = jobs[i];
        pthread_create(&r->thread, NULL, runner_main, r);
    }
    return j;
}

void sb_jobs_stop(sb_jobs_t *j)
{
    if (!j)
        return;
    atomic_store(&j->stop, true);
    for (size_t i = 0; i < j->n; i++)
        pthread_join(j->runners[i].thread, NULL);
    free(j->runners);
    free(j);
}
