/* The inbox: one packed envelope through decoding, the event table and the
 * inbox table, exactly once per event id. See sb/events.h for the policy.
 *
 * Design: every event, from Kafka or from DeliverEvent, takes this one path,
 * so both answer the same: the envelope and the payload are decoded into the
 * event's arena by the runtime (a handler gets its typed payload and never
 * unpacks or frees anything); the event id goes into sb_inbox in the same
 * transaction as the handler's effect (INSERT ... ON CONFLICT DO NOTHING
 * first, so a second delivery of the id finds the row, or waits for the first
 * transaction and then finds it), so a redelivered event has no second effect.
 *
 * What is malformed is told apart from what failed. Malformed (no retry can
 * fix it): an undecodable envelope, one without a UUID event id or a type, a
 * type unknown to the platform, an undecodable payload, a handler's refusal.
 * Such an event goes to sb_dead_letters with the reason, and is NOT recorded
 * in the inbox: the id stays free, so the sender can correct the event and
 * send it again under the same id. Everything else (the database, Redis, a
 * handler's other errors) rolls back and leaves nothing, for a retry.
 *
 * A platform type the table has no row for is another service's business on
 * a topic this one reads (sb.member carries events auth handles and events it
 * does not): it is recorded in the inbox and skipped, never dead-lettered. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sb/events.h"
#include "sb/log.h"
#include "sb/rpc_cache.h"
#include "sb/valid.h"

static const sb_pg_stmt_t stmt_inbox_record = {
    "sb_inbox_record",
    "INSERT INTO sb_inbox (event_id, type) VALUES ($1::uuid, $2) ON CONFLICT DO NOTHING"};

static const sb_pg_stmt_t stmt_dead_letter = {
    "sb_dead_letter", "INSERT INTO sb_dead_letters (topic, event_id, envelope, error, type, source)"
                      " VALUES ($1, $2, $3::bytea, $4, $5, $6)"};

sb_status_t sb_event_refuse(sb_event_ctx_t *ev, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_buf_reset(&ev->reason);
    sb_buf_vaddf(&ev->reason, fmt, ap);
    va_end(ap);
    return SB_INVALID_ARGUMENT;
}

void sb_inbox_result_release(sb_inbox_result_t *res)
{
    sb_buf_release(&res->reason);
    sb_buf_release(&res->detail);
}

sb_status_t sb_dead_letter_add(sb_pg_pool_t *pool, const char *source, const char *topic,
                               const void *bytes, size_t len, const char *why, sb_buf_t *err)
{
    sb_arena_t *a = sb_arena_new();
    sb_event_envelope_t *env = sb__events__event_envelope__unpack(sb_arena_pb_allocator(a), len, bytes);
    const char *type = env && *env->type ? env->type : NULL;
    char derived[128];
    if (!topic)
        topic = type && sb_event_topic(type, derived, sizeof derived) ? derived : "";
    sb_status_t st = SB_UNAVAILABLE;
    sb_pg_conn_t *c = sb_pg_acquire(pool, 5000, err);
    if (c) {
        const char *params[] = {
            topic, env && *env->event_id ? env->event_id : NULL, bytes ? bytes : "", why, type, source};
        const int lens[] = {0, 0, (int)len, 0, 0, 0};
        const int fmts[] = {0, 0, 1, 0, 0, 0};
        PGresult *r = sb_pg_exec_bin(c, &stmt_dead_letter, 6, params, lens, fmts);
        st = sb_pg_check(c, r, err);
        PQclear(r);
        sb_pg_release(pool, c);
    }
    if (st == SB_OK)
        sb_warn("event %s %s from %s%s%s moved to the dead letters: %s", type ? type : "?",
                env && *env->event_id ? env->event_id : "?", source, *topic ? " on " : "", topic, why);
    sb_arena_free(a);
    return st;
}

/* A replay of dead letter `id` (sb_inbox_replay); NULL for a delivery. */
struct replay {
    const char *id, *by;
};

static const sb_pg_stmt_t stmt_replay_failed = {
    "sb_dead_letter_replay_failed",
    "UPDATE sb_dead_letters SET error = $2, replay_attempts = replay_attempts + 1"
    " WHERE id = $1::bigint AND replayed_at IS NULL"};

static const sb_pg_stmt_t stmt_replay_done = {
    "sb_dead_letter_replay_done", "UPDATE sb_dead_letters SET replayed_at = now(), replayed_by = $2"
                                  " WHERE id = $1::bigint AND replayed_at IS NULL"};

/* A replay that still cannot be used: the row stays, with the new reason. */
static sb_status_t replay_failed(sb_pg_pool_t *pool, const struct replay *rp, sb_inbox_result_t *res)
{
    sb_status_t st = SB_UNAVAILABLE;
    sb_pg_conn_t *c = sb_pg_acquire(pool, 5000, &res->detail);
    if (c) {
        const char *params[] = {rp->id, res->reason.buf};
        PGresult *r = sb_pg_exec(c, &stmt_replay_failed, 2, params);
        st = sb_pg_check(c, r, &res->detail);
        PQclear(r);
        sb_pg_release(pool, c);
    }
    if (st != SB_OK) {
        sb_error("dead letter %s: cannot record the failed replay (%s): %s", rp->id, res->reason.buf,
                 res->detail.buf);
        res->outcome = SB_EVENT_FAILED;
        return st;
    }
    sb_warn("dead letter %s replayed by %s: still cannot be handled: %s", rp->id, rp->by,
            res->reason.buf);
    res->outcome = SB_EVENT_DEAD_LETTER;
    return SB_INVALID_ARGUMENT;
}

/* The event could not be used: a dead letter (or, when even that cannot be
 * written, a failure to retry). A replay keeps its one row instead. */
static sb_status_t dead_letter(sb_pg_pool_t *pool, const char *source, const char *topic,
                               const void *bytes, size_t len, const struct replay *rp,
                               sb_inbox_result_t *res)
{
    if (rp)
        return replay_failed(pool, rp, res);
    sb_status_t st = sb_dead_letter_add(pool, source, topic, bytes, len, res->reason.buf, &res->detail);
    if (st != SB_OK) {
        sb_error("event from %s: cannot write the dead letter (%s): %s", source, res->reason.buf,
                 res->detail.buf);
        res->outcome = SB_EVENT_FAILED;
        return st;
    }
    res->outcome = SB_EVENT_DEAD_LETTER;
    return SB_INVALID_ARGUMENT;
}

struct inbox_job {
    sb_event_ctx_t *ev;
    const sb_event_handler_t *row; /* NULL: skipped */
    const void *payload;
    const struct replay *replay;
    const sb_inbox_also_t *also;
    bool duplicate;
};

static sb_status_t inbox_tx(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    struct inbox_job *j = arg;
    sb_db_t db = {c, j->ev->arena, err};
    j->ev->db = &db;
    j->duplicate = false;
    sb_buf_reset(&j->ev->reason);
    PGresult *r;
    sb_status_t st = sb_db_exec(&db, &stmt_inbox_record, &r, j->ev->env->event_id, j->ev->env->type);
    if (st != SB_OK)
        goto out;
    j->duplicate = sb_db_affected(r) == 0;
    if (!j->duplicate && j->row) {
        st = j->row->fn(j->ev, j->payload);
        if (st == SB_OK && j->also)
            st = j->also->fn(&db, j->also->arg);
    }
    /* a replayed dead letter is resolved with the effect, in its transaction
     * (a duplicate too: the event id was processed, by a resend or a racing replay) */
    if (st == SB_OK && j->replay)
        st = sb_db_exec(&db, &stmt_replay_done, NULL, j->replay->id, j->replay->by);
out:
    j->ev->db = NULL;
    return st;
}

static sb_status_t handle(sb_pg_pool_t *pool, const sb_event_table_t *t, const char *source,
                          const char *topic, const void *bytes, size_t len, const struct replay *rp,
                          const sb_inbox_also_t *also, sb_inbox_result_t *res)
{
    sb_buf_reset(&res->reason);
    sb_buf_reset(&res->detail);
    res->outcome = SB_EVENT_FAILED;
    sb_arena_t *arena = sb_arena_new();
    sb_status_t st;
    sb_event_ctx_t ev = {.arena = arena, .arg = t->arg, .reason = SB_BUF_INIT};
    sb_event_envelope_t *env =
        sb__events__event_envelope__unpack(sb_arena_pb_allocator(arena), len, bytes);
    if (!env) {
        sb_buf_addf(&res->reason, "undecodable event envelope (%zu bytes)", len);
        st = dead_letter(pool, source, topic, bytes, len, rp, res);
        goto out_arena;
    }
    if (!sb_valid_uuid(env->event_id) || !*env->type) {
        sb_buf_adds(&res->reason, "the event envelope needs a UUID event id and a type");
        st = dead_letter(pool, source, topic, bytes, len, rp, res);
        goto out_arena;
    }
    ev.env = env;
    char saved[65];
    snprintf(saved, sizeof saved, "%s", sb_log_trace());
    sb_log_set_trace(env->trace_id);

    const ProtobufCMessageDescriptor *desc = sb_event_payload_of(env->type);
    if (!desc) {
        sb_buf_addf(&res->reason, "unknown event type \"%.100s\": not an event of the platform",
                    env->type);
        st = dead_letter(pool, source, topic, bytes, len, rp, res);
        goto out_trace;
    }
    struct inbox_job j = {&ev, sb_event_table_find(t, env->type), NULL, rp, also, false};
    if (j.row) {
        j.payload = protobuf_c_message_unpack(desc, sb_arena_pb_allocator(arena), env->payload.len,
                                              env->payload.data);
        if (!j.payload) {
            sb_buf_addf(&res->reason, "undecodable %s payload (%zu bytes) of %s", desc->short_name,
                        env->payload.len, env->type);
            st = dead_letter(pool, source, topic, bytes, len, rp, res);
            goto out_trace;
        }
    }
    st = sb_pg_tx(pool, SB_PG_READ_COMMITTED, inbox_tx, &j, &res->detail);
    if (st == SB_OK) {
        res->outcome = j.duplicate ? SB_EVENT_DUPLICATE : j.row ? SB_EVENT_HANDLED : SB_EVENT_SKIPPED;
        /* committed: answers served from memory that the event changed go */
        if (res->outcome == SB_EVENT_HANDLED)
            sb_rpc_cache_event(env->type, env->aggregate_id);
        sb_log(j.duplicate ? SB_LOG_INFO : SB_LOG_DEBUG, "event %s %s %s", env->type, env->event_id,
               j.duplicate ? "already processed: dropped"
               : j.row     ? "handled"
                           : "not for this service: recorded and skipped");
    } else if (st == SB_INVALID_ARGUMENT) {
        /* refused by the handler (or data the database calls invalid) */
        if (ev.reason.len)
            sb_buf_addf(&res->reason, "%s %s refused: %s", env->type, env->event_id, ev.reason.buf);
        else
            sb_buf_addf(&res->reason, "%s %s refused as invalid", env->type, env->event_id);
        if (res->detail.len)
            sb_warn("event %s %s refused: %s", env->type, env->event_id, res->detail.buf);
        sb_buf_reset(&res->detail);
        st = dead_letter(pool, source, topic, bytes, len, rp, res);
    } else {
        sb_buf_addf(&res->reason, "%s %s could not be handled (%s); it may be sent again", env->type,
                    env->event_id, sb_status_name(st));
        sb_warn("event %s %s failed: %s: %s", env->type, env->event_id, sb_status_name(st),
                res->detail.buf);
    }
out_trace:
    sb_log_set_trace(saved);
out_arena:
    sb_buf_release(&ev.reason);
    sb_arena_free(arena);
    return st;
}

sb_status_t sb_inbox_handle(sb_pg_pool_t *pool, const sb_event_table_t *t, const char *source,
                            const char *topic, const void *bytes, size_t len, sb_inbox_result_t *res)
{
    return handle(pool, t, source, topic, bytes, len, NULL, NULL, res);
}

sb_status_t sb_inbox_deliver(sb_pg_pool_t *pool, const sb_event_table_t *t, const char *source,
                             const void *bytes, size_t len, const sb_inbox_also_t *also,
                             sb_inbox_result_t *res)
{
    return handle(pool, t, source, NULL, bytes, len, NULL, also, res);
}

sb_status_t sb_inbox_replay(sb_pg_pool_t *pool, const sb_event_table_t *t, int64_t id, const char *by,
                            const char *topic, const void *bytes, size_t len,
                            const sb_inbox_also_t *also, sb_inbox_result_t *res)
{
    char ids[24];
    snprintf(ids, sizeof ids, "%lld", (long long)id);
    struct replay rp = {ids, by};
    return handle(pool, t, "replay", topic, bytes, len, &rp, also, res);
}
