/* Periodic work: the job table.
 *
 *     static sb_status_t expire_holds(sb_job_ctx_t *job) { ... job->db ... }
 *     static const sb_job_t jobs[] = {{"hold-expiry", expire_holds, .every_ms = 1000}};
 *     ... .jobs = jobs, .n_jobs = 1 ... (sb_service_def_t, sb/service.h)
 *
 * The runtime runs each job on a thread of its own, with a connection of its
 * own (outside the pool). A tick is one transaction that first takes
 * pg_try_advisory_xact_lock(<the job's key>): exactly one replica works at a
 * time (the others skip the tick), and a tick that fails or dies halfway
 * rolls back, so a crash loses nothing and the next tick, here or on another
 * replica, starts from what was committed. A job runs every every_ms, at once
 * again when a tick sets job->again (more work waiting), and early when a
 * NOTIFY arrives on its channel (a transaction can wake a job at COMMIT with
 * pg_notify). A failing job backs off (doubling, up to 5 s).
 *
 * A job that must wait on another system (the outbox relay waits for Kafka)
 * cannot hold a transaction open that long: it is a session job. Its runner
 * becomes the job's leader by taking pg_try_advisory_lock(<key>) on its own
 * connection and stays leader while that connection lives; its ticks run on
 * that connection outside any transaction (each statement commits by itself,
 * or the job runs short transactions of its own). Only the leader ticks; the
 * other replicas try the lock every every_ms and take over when the leader's
 * connection ends (process exit, crash, lost network). */
#ifndef SB_JOBS_H
#define SB_JOBS_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "sb/arena.h"
#include "sb/buf.h"
#include "sb/db.h"
#include "sb/pg.h"
#include "sb/status.h"

typedef struct sb_job sb_job_t;

/* One tick; borrowed for the call. */
typedef struct sb_job_ctx {
    const sb_job_t *job;
    sb_db_t *db;                 /* inside the tick's transaction (a session job: its
                                  * leader connection, no transaction open); results
                                  * and db->detail as for any unit of work (sb/db.h) */
    sb_arena_t *arena;           /* the tick's, freed after it */
    void *arg;                   /* given to sb_jobs_start (a service's jobs: its sb_service_t) */
    const atomic_bool *stopping; /* becomes true when the runner stops: cut long waits short */
    bool final;                  /* the last tick, run while stopping (sb_job_t.final_tick) */
    bool again;                  /* set by the job: more work is waiting, tick again at once */
} sb_job_ctx_t;

/* OK commits the tick; anything else rolls it back (detail in job->db->detail
 * goes to the log) and the job backs off. */
typedef sb_status_t (*sb_job_fn)(sb_job_ctx_t *job);

struct sb_job {
    const char *name; /* "hold-expiry": logs, and the lock key SB_LOCK_JOB(name) */
    sb_job_fn fn;
    int every_ms;         /* between ticks (0: 1000) */
    const char *channel;  /* NOTIFY channel that wakes it early; NULL: none */
    const char *lock_key; /* a fixed key from sb/locks.h instead of the name's; NULL: by name */
    bool session;         /* a session job (see above) */
    bool final_tick;      /* tick once more when the runner stops (flush what is left) */
};

typedef struct sb_jobs sb_jobs_t;
/* Starts a thread per job (the rows are copied; their strings and fn must
 * outlive the runner). NULL with err when a job has no name or fn. */
sb_jobs_t *sb_jobs_start(sb_pg_pool_t *pool, const sb_job_t *jobs, size_t n, void *arg, sb_buf_t *err);
/* Stops every job (a tick in progress finishes; stopping is set for it), runs
 * the final ticks, closes the connections (ending their locks), frees. NULL
 * is fine. */
void sb_jobs_stop(sb_jobs_t *j);

#endif
