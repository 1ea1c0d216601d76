/* The transactional outbox: events written in the state change's own
 * transaction. See sb/events.h.
 *
 * Design: a service never talks to Kafka while it changes state. It appends
 * the event (an envelope with a fresh id, the time, the trace id and the
 * packed payload) to sb_outbox on the transaction that makes the change, so
 * the event exists if and only if the change committed; the relay (relay.c)
 * publishes it afterwards. The row carries its topic and key so the relay
 * needs nothing but the row. A NOTIFY on SB_OUTBOX_CHANNEL, which PostgreSQL
 * delivers at COMMIT (once per transaction however many events it wrote),
 * wakes the relay at once; its polling is only the fallback.
 *
 * The payload must be the message the platform pairs with the type
 * (event_types.c): a mismatch is the producer's bug, refused here rather than
 * dead-lettered by every consumer later.
 *
 * The tables themselves are common migrations (common/migrations/NNNN_what.sql,
 * embedded as sb_common_migrations), applied to every service's database
 * before the service's own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/arena.h"
#include "sb/events.h"
#include "sb/log.h"
#include "sb/util.h"

extern const sb_migration_set_t sb_common_migrations;

sb_status_t sb_events_migrate(sb_pg_pool_t *pool, sb_buf_t *err)
{
    return sb_pg_migrate(pool, "common", sb_common_migrations.items, sb_common_migrations.n, err);
}

static const sb_pg_stmt_t stmt_outbox_insert = {
    "sb_outbox_insert",
    "INSERT INTO sb_outbox (event_id, topic, type, aggregate_id, envelope, occurred_at)"
    " VALUES ($1::uuid, $2, $3, $4, $5::bytea, $6::timestamptz)"};

sb_status_t sb_outbox_add(sb_pg_conn_t *tx, const char *type, const char *aggregate_id,
                          const ProtobufCMessage *payload, char *event_id_out, sb_buf_t *err)
{
    char topic[128], id[SB_UUID_LEN + 1], ts[32];
    const ProtobufCMessageDescriptor *want = sb_event_payload_of(type);
    if (!want) {
        sb_buf_addf(err, "event type %s is not an event of the platform (event_types.c)", type);
        return SB_INTERNAL;
    }
    if (payload->descriptor != want) {
        sb_buf_addf(err, "event type %s carries %s, not %s", type, want->short_name,
                    payload->descriptor->short_name);
        return SB_INTERNAL;
    }
    if (!sb_event_topic(type, topic, sizeof topic)) {
        sb_buf_addf(err, "event type %s has no topic prefix", type);
        return SB_INTERNAL;
    }
    sb_uuid_v4(id);
    sb_time_rfc3339(sb_now_ms(), ts);
    sb_arena_t *a = sb_arena_new();
    sb_event_envelope_t env = SB__EVENTS__EVENT_ENVELOPE__INIT;
    env.event_id = id;
    env.type = (char *)type;
    env.aggregate_id = (char *)aggregate_id;
    env.occurred_at = ts;
    env.trace_id = (char *)sb_log_trace();
    env.producer = (char *)sb_log_service();
    size_t plen = protobuf_c_message_get_packed_size(payload);
    env.payload.len = plen;
    env.payload.data = sb_arena_alloc(a, plen ? plen : 1);
    protobuf_c_message_pack(payload, env.payload.data);
    size_t elen = sb__events__event_envelope__get_packed_size(&env);
    uint8_t *ebytes = sb_arena_alloc(a, elen ? elen : 1);
    sb__events__event_envelope__pack(&env, ebytes);

    const char *params[] = {id, topic, type, aggregate_id, (const char *)ebytes, ts};
    const int lens[] = {0, 0, 0, 0, (int)elen, 0};
    const int fmts[] = {0, 0, 0, 0, 1, 0};
    PGresult *r = sb_pg_exec_bin(tx, &stmt_outbox_insert, 6, params, lens, fmts);
    sb_status_t st = sb_pg_check(tx, r, err);
    PQclear(r);
    sb_arena_free(a);
    if (st == SB_OK) {
        /* wakes the relay at COMMIT (see the design note) */
        static const sb_pg_stmt_t notify = {"sb_outbox_notify",
                                            "SELECT pg_notify('" SB_OUTBOX_CHANNEL "', '')"};
        r = sb_pg_exec(tx, &notify, 0, NULL);
        st = sb_pg_check(tx, r, err);
        PQclear(r);
    }
    if (st == SB_OK && event_id_out)
        memcpy(event_id_out, id, sizeof id);
    return st;
}

/* Replay: the matching published rows get published_at = NULL and the relay
 * (relay.c) does the rest. It reads unsent rows in id order, so the replayed
 * rows go out in their original order per aggregate (Kafka key), interleaved
 * by id with any new ones, and each keeps its envelope: the same event id,
 * which every consumer's inbox has already recorded. Rows not yet published
 * are not counted (they go out anyway). One statement: the count and the
 * first ids come from the UPDATE's own RETURNING, and the NOTIFY wakes the
 * relay when the caller's unit commits (with the admin's audit record). No index serves
 * aggregate_id: an admin's replay scans the outbox rather than every event
 * insert paying for an index. */
static const sb_pg_stmt_t stmt_replay = {
    "sb_outbox_replay",
    "WITH u AS (UPDATE sb_outbox SET published_at = NULL WHERE published_at IS NOT NULL"
    " AND starts_with(type, $1) AND ($2::text IS NULL OR aggregate_id = $2)"
    " AND ($3::timestamptz IS NULL OR occurred_at >= $3::timestamptz)"
    " AND ($4::timestamptz IS NULL OR occurred_at < $4::timestamptz) RETURNING id, event_id)"
    " SELECT (SELECT count(*) FROM u),"
    " array_to_string(ARRAY(SELECT event_id::text FROM u ORDER BY id LIMIT $5::int), ','),"
    " pg_notify('" SB_OUTBOX_CHANNEL "', '')"};

static const char *or_null(const char *s)
{
    return s && *s ? s : NULL;
}

sb_status_t sb_outbox_replay(sb_db_t *db, const sb_outbox_filter_t *f, sb_outbox_replayed_t *out)
{
    *out = (sb_outbox_replayed_t){0};
    char limit[16];
    snprintf(limit, sizeof limit, "%d", SB_OUTBOX_REPLAY_IDS);
    PGresult *r;
    sb_status_t st = sb_db_exec(db, &stmt_replay, &r, f->type_prefix ? f->type_prefix : "",
                                or_null(f->aggregate_id), or_null(f->since), or_null(f->until), limit);
    if (st != SB_OK)
        return st;
    out->count = atoll(PQgetvalue(r, 0, 0));
    /* uuids: no commas, no quoting */
    char *ids = sb_arena_strdup(db->arena, PQgetvalue(r, 0, 1));
    out->ids = SB_ARENA_NEW(db->arena, char *, SB_OUTBOX_REPLAY_IDS);
    for (char *save = NULL, *t = strtok_r(ids, ",", &save); t && out->n_ids < SB_OUTBOX_REPLAY_IDS;
         t = strtok_r(NULL, ",", &save))
        out->ids[out->n_ids++] = t;
    return SB_OK;
}
