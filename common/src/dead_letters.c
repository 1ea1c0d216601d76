/* The dead letters of a service, for admins: GET /admin/dead-letters/{serviceId}
 * (ListDeadLetters) and POST /admin/dead-letters/{serviceId}/{id}/replay
 * (ReplayDeadLetter), the rpcs of proto/runtime.proto that sb_service_main
 * registers in every service (sb_service_add_runtime): no service writes a
 * line for them.
 *
 * Design: a replay is the stored envelope through the service's own event
 * table and inbox (sb_inbox_replay), the path a Kafka message and
 * DeliverEvent take, so it is deduplicated and refused exactly as a delivery
 * would be. It resolves the row in the transaction that applies the event:
 * the effect and replayed_at commit together or not at all, so a crash or two
 * admins replaying at once still apply the event once. A replayed row is
 * answered as it is (nothing runs again); one that still cannot be handled
 * stays, with the new reason, and the admin reads that reason. Rows are never
 * deleted here: the table is the record of what went wrong. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.pb-c.h"
#include "sb/audit.h"
#include "sb/db.h"
#include "sb/log.h"
#include "sb/service.h"

#define PAGE_DEFAULT 20
#define PAGE_MAX 100

#define COLUMNS                                                                                         \
    "id, coalesce(event_id, '') AS event_id, coalesce(type, '') AS type, topic, source, error,"         \
    " " SB_DB_TS("failed_at") " AS failed_at, " SB_DB_TS("replayed_at") " AS replayed_at,"              \
                                                                        " replayed_by, replay_attempts"

static const sb_pg_stmt_t stmt_list = {"sb_dead_letters_list",
                                       "SELECT " COLUMNS " FROM sb_dead_letters"
                                       " WHERE ($1::bigint IS NULL OR id < $1::bigint)"
                                       " AND (NOT $2::bool OR replayed_at IS NULL)"
                                       " ORDER BY id DESC LIMIT $3::int"};

static const sb_pg_stmt_t stmt_get = {"sb_dead_letters_get",
                                      "SELECT " COLUMNS " FROM sb_dead_letters WHERE id = $1::bigint"};

static const sb_pg_stmt_t stmt_envelope = {
    "sb_dead_letters_envelope",
    "SELECT topic, envelope, replayed_at IS NOT NULL FROM sb_dead_letters WHERE id = $1::bigint"};

/* The request names this service (the gateway sends it here by that name). */
static sb_status_t check_service(sb_rpc_ctx_t *ctx, const char *service_id)
{
    const char *name = sb_service_of(ctx)->def->name;
    if (strcmp(service_id ? service_id : "", name) != 0)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "serviceId: this is the %s service, not \"%.64s\"",
                           name, service_id ? service_id : "");
    return SB_OK;
}

static sb_status_t dead_letters_list(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Runtime__ListDeadLettersRequest *req = in;
    Sb__Runtime__ListDeadLettersResponse *resp = out;
    sb_status_t st = check_service(ctx, req->service_id);
    if (st != SB_OK)
        return st;
    if (!sb_rpc_is_admin(ctx))
        return sb_rpc_fail(ctx, SB_PERMISSION_DENIED, "only an admin may list dead letters");
    if (req->page_size < 0 || req->page_size > PAGE_MAX)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "pageSize: must be 1..%d", PAGE_MAX);
    int size = req->page_size ? req->page_size : PAGE_DEFAULT;
    const char *after = NULL; /* the token: the last id of the previous page */
    if (req->page_token && *req->page_token) {
        char *end;
        long long v = strtoll(req->page_token, &end, 10);
        if (*end || v <= 0 || strlen(req->page_token) > 19)
            return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "pageToken: not a token of this list");
        after = req->page_token;
    }
    PGresult *r;
    st = sb_db_exec(ctx->db, &stmt_list, &r, after, req->unreplayed ? "t" : "f",
                    sb_arena_printf(ctx->arena, "%d", size + 1));
    if (st != SB_OK)
        return st;
    int n = PQntuples(r);
    bool more = n > size;
    if (more)
        n = size;
    resp->n_dead_letters = (size_t)n;
    resp->dead_letters = sb_db_rows_to_pb(ctx->arena, r, 0, n, &sb__runtime__dead_letter__descriptor);
    if (more)
        resp->next_page_token = sb_arena_strdup(ctx->arena, PQgetvalue(r, n - 1, 0));
    return SB_OK;
}

/* The row as it is now, into *out (arena). */
static sb_status_t load(sb_rpc_ctx_t *ctx, const char *id, Sb__Runtime__DeadLetter **out)
{
    PGresult *r;
    sb_status_t st = sb_db_exec(ctx->db, &stmt_get, &r, id);
    if (st != SB_OK)
        return st;
    if (PQntuples(r) == 0)
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "dead letter %s not found", id);
    *out = *(Sb__Runtime__DeadLetter **)sb_db_rows_to_pb(ctx->arena, r, 0, 1,
                                                         &sb__runtime__dead_letter__descriptor);
    return SB_OK;
}

static sb_status_t dead_letter_replay(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Runtime__ReplayDeadLetterRequest *req = in;
    Sb__Runtime__ReplayDeadLetterResponse *resp = out;
    sb_service_t *svc = sb_service_of(ctx);
    sb_status_t st = check_service(ctx, req->service_id);
    if (st != SB_OK)
        return st;
    if (!sb_rpc_is_admin(ctx))
        return sb_rpc_fail(ctx, SB_PERMISSION_DENIED, "only an admin may replay dead letters");
    if ((st = sb_audit_need_reason(ctx, req->reason)) != SB_OK)
        return st;
    const char *id = sb_arena_printf(ctx->arena, "%" PRId64, req->id);
    PGresult *r;
    if ((st = sb_db_exec(ctx->db, &stmt_envelope, &r, id)) != SB_OK)
        return st;
    if (PQntuples(r) == 0)
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "dead letter %s not found", id);
    if (!strcmp(PQgetvalue(r, 0, 2), "t")) {
        /* replayed before: the same answer, nothing runs again */
        resp->duplicate = true;
        return load(ctx, id, &resp->dead_letter);
    }
    if (!svc->def->n_events)
        return sb_rpc_fail(ctx, SB_FAILED_PRECONDITION, "the %s service consumes no events",
                           svc->def->name);
    size_t len;
    unsigned char *bytes = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 1), &len);
    if (!bytes)
        return sb_rpc_error(ctx, SB_INTERNAL, "dead letter %s: cannot unescape the envelope", id);
    sb_arena_on_free(ctx->arena, PQfreemem, bytes);

    sb_event_table_t events = {svc->def->events, svc->def->n_events, svc};
    sb_inbox_result_t res = SB_INBOX_RESULT_INIT;
    /* applied: an admin's change to the service's data, audited with it */
    sb_audit_call_t audit = {ctx,
                             {.target_type = "dead_letter",
                              .target_id = id,
                              .reason = req->reason,
                              .before = "unreplayed",
                              .after = "replayed",
                              .service = svc->def->name}};
    sb_inbox_also_t also = {sb_audit_record_on, &audit};
    st = sb_inbox_replay(svc->pg, &events, req->id, ctx->user_id, PQgetvalue(r, 0, 0), bytes, len, &also,
                         &res);
    if (res.outcome == SB_EVENT_DEAD_LETTER)
        st = sb_rpc_fail(ctx, SB_FAILED_PRECONDITION,
                         "dead letter %s still cannot be handled (kept): %s", id, res.reason.buf);
    else if (st != SB_OK)
        st = sb_rpc_error(ctx, st, "dead letter %s: %s: %s", id, res.reason.buf, res.detail.buf);
    if (st == SB_OK) {
        resp->duplicate = res.outcome == SB_EVENT_DUPLICATE;
        sb_info("dead letter %s replayed by %s: %s", id, ctx->user_id,
                res.outcome == SB_EVENT_DUPLICATE ? "already processed (nothing applied again)"
                : res.outcome == SB_EVENT_SKIPPED ? "not for this service (recorded)"
                                                  : "handled");
        st = load(ctx, id, &resp->dead_letter);
    }
    sb_inbox_result_release(&res);
    return st;
}

static const sb_rpc_method_t runtime_methods[] = {
    {"ListDeadLetters", dead_letters_list},
    {"ReplayDeadLetter", dead_letter_replay},
};

void sb_service_add_runtime(sb_server_t *server, sb_service_t *svc)
{
    sb_server_add_service_run(server, &sb__runtime__runtime__descriptor, runtime_methods,
                              sizeof runtime_methods / sizeof runtime_methods[0], svc, sb_service_call);
}
