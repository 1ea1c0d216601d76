/* The inbox: each event id handled once. See sb/events.h.
 *
 * Design: the event id goes into sb_inbox in the same transaction as the
 * handler's effect (INSERT ... ON CONFLICT DO NOTHING first, so a second
 * delivery of the id finds the row, or waits for the first transaction and
 * then finds it), so a redelivered event has no second effect whether it
 * came again from Kafka, from a replayed outbox or from DeliverEvent. */
#include <stdio.h>
#include <string.h>

#include "sb/events.h"
#include "sb/log.h"
#include "sb/valid.h"

struct inbox_job {
    const sb_event_envelope_t *ev;
    sb_event_fn fn;
    void *arg;
    bool *duplicate;
};

static sb_status_t inbox_tx(sb_pg_conn_t *c, void *arg, sb_buf_t *err)
{
    static const sb_pg_stmt_t record = {
        "sb_inbox_record",
        "INSERT INTO sb_inbox (event_id, type) VALUES ($1::uuid, $2) ON CONFLICT DO NOTHING"};
    struct inbox_job *j = arg;
    const char *params[] = {j->ev->event_id, j->ev->type};
    PGresult *r = sb_pg_exec(c, &record, 2, params);
    sb_status_t st = sb_pg_check(c, r, err);
    bool dup = st == SB_OK && strcmp(PQcmdTuples(r), "0") == 0;
    PQclear(r);
    if (st != SB_OK)
        return st;
    *j->duplicate = dup;
    if (dup)
        return SB_OK;
    return j->fn(c, j->ev, j->arg, err);
}

sb_status_t sb_inbox_handle(sb_pg_pool_t *pool, const void *bytes, size_t len, sb_event_fn fn,
                            void *arg, bool *duplicate, sb_buf_t *err)
{
    *duplicate = false;
    sb_event_envelope_t *ev = sb__events__event_envelope__unpack(NULL, len, bytes);
    if (!ev) {
        sb_buf_addf(err, "undecodable event envelope (%zu bytes)", len);
        return SB_INVALID_ARGUMENT;
    }
    sb_status_t st;
    if (!sb_valid_uuid(ev->event_id) || !*ev->type) {
        sb_buf_addf(err, "event envelope needs a UUID event id and a type");
        st = SB_INVALID_ARGUMENT;
        goto out_free;
    }
    char saved[65];
    snprintf(saved, sizeof saved, "%s", sb_log_trace());
    sb_log_set_trace(ev->trace_id);
    struct inbox_job j = {ev, fn, arg, duplicate};
    st = sb_pg_tx(pool, SB_PG_READ_COMMITTED, inbox_tx, &j, err);
    if (st == SB_OK)
        sb_log(*duplicate ? SB_LOG_INFO : SB_LOG_DEBUG, "event %s %s %s", ev->type, ev->event_id,
               *duplicate ? "already processed: dropped" : "handled");
    sb_log_set_trace(saved);
out_free:
    sb__events__event_envelope__free_unpacked(ev, NULL);
    return st;
}
