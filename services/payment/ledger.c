/* CheckLedger (GET /admin/payments/ledger, admin): the provider's books
 * against ours. The provider's totals (GET /v1/admin/totals) against the
 * sums of our payments (charged: APPROVED, REFUNDED, DISPUTED; refunded: the
 * refunded amounts), and its every charge (GET /v1/admin/charges) against
 * the payment made with the same key, joined in SQL (the provider's list
 * goes in as jsonb): a succeeded charge needs a charged payment of the same
 * amount and refunded amount, disputed exactly when the payment is; a failed
 * one a payment never charged (DECLINED, CANCELLED); a charged payment
 * needs its charge. Each difference is one line; clean when there is none.
 * A PENDING payment whose charge succeeded is a difference until it is
 * settled (the reconciler's work).
 *
 * Then the reservations: every CONFIRMED reservation (the reservation
 * service's ListReservations, paged, on the admin's behalf) must have
 * exactly one APPROVED payment, the one it names, and every APPROVED
 * payment a CONFIRMED reservation. The saga settles these through events,
 * so a payment approved a moment ago, or one refused and being refunded, is
 * a difference until the events are handled: a check is clean when the
 * platform is at rest. */
#include <stdlib.h>
#include <string.h>

#include "payment.h"
#include "reservation.pb-c.h"
#include "sb/log.h"

#define LEDGER_TIMEOUT_MS 5000
#define RESERVATION_PAGE 100
#define RESERVATION_PAGES_MAX 1000 /* 100,000 CONFIRMED reservations */

static const sb_pg_stmt_t stmt_sums = {
    "pay_ledger_sums",
    "SELECT COALESCE(sum(amount) FILTER (WHERE status IN ('APPROVED', 'REFUNDED', 'DISPUTED')), 0),"
    " COALESCE(sum(refunded_amount), 0) FROM payments"};

static const sb_pg_stmt_t stmt_diff = {
    "pay_ledger_diff",
    "WITH c AS (SELECT * FROM jsonb_to_recordset($1::jsonb -> 'data') AS x(id text, amount bigint,"
    "   amount_refunded bigint, status text, idempotency_key text, disputed boolean)),"
    " p AS (SELECT * FROM payments WHERE status IN ('APPROVED', 'REFUNDED', 'DISPUTED')"
    "   OR provider_ref IS NOT NULL OR status = 'PENDING'),"
    " j AS (SELECT c.id, c.amount, c.amount_refunded, c.status, COALESCE(c.disputed, false) AS disputed,"
    "   p.payment_id, p.status AS pstatus, p.amount AS pamount, p.refunded_amount"
    "   FROM c FULL JOIN p ON p.provider_key = c.idempotency_key)"
    " SELECT d FROM (SELECT CASE"
    "  WHEN j.payment_id IS NULL AND j.status = 'succeeded' THEN"
    "   format('charge %s of %s succeeded at the provider: no payment has it', j.id, j.amount)"
    "  WHEN j.id IS NULL AND j.pstatus IN ('APPROVED', 'REFUNDED', 'DISPUTED') THEN"
    "   format('payment %s is %s: the provider has no charge for it', j.payment_id, j.pstatus)"
    "  WHEN j.id IS NULL THEN NULL"
    "  WHEN j.status = 'succeeded' AND j.pstatus NOT IN ('APPROVED', 'REFUNDED', 'DISPUTED') THEN"
    "   format('charge %s succeeded at the provider: payment %s is %s', j.id, j.payment_id, j.pstatus)"
    "  WHEN j.status = 'failed' AND j.pstatus IS NOT NULL AND j.pstatus NOT IN ('DECLINED', 'CANCELLED')"
    " THEN"
    "   format('charge %s failed at the provider: payment %s is %s', j.id, j.payment_id, j.pstatus)"
    "  WHEN j.status = 'succeeded' AND j.amount <> j.pamount THEN"
    "   format('charge %s is %s at the provider, payment %s is %s', j.id, j.amount, j.payment_id,"
    "     j.pamount)"
    "  WHEN j.status = 'succeeded' AND j.amount_refunded <> j.refunded_amount THEN"
    "   format('charge %s has %s refunded at the provider, payment %s has %s (%s)', j.id,"
    "     j.amount_refunded, j.payment_id, j.refunded_amount, j.pstatus)"
    "  WHEN j.status = 'succeeded' AND j.disputed <> (j.pstatus = 'DISPUTED') AND j.pstatus <> "
    "'REFUNDED'"
    "   THEN format('charge %s disputed=%s at the provider, payment %s is %s', j.id, j.disputed,"
    "     j.payment_id, j.pstatus)"
    " END AS d FROM j) x WHERE d IS NOT NULL ORDER BY d"};

/* $1 the CONFIRMED reservations' ids, $2 the payment ids they name (text
 * arrays of equal length). */
static const sb_pg_stmt_t stmt_reservations = {
    "pay_ledger_reservations",
    "WITH r AS (SELECT * FROM unnest($1::text[], $2::text[]) AS x(reservation_id, payment_id)),"
    " a AS (SELECT reservation_id::text AS reservation_id, payment_id::text AS payment_id"
    "   FROM payments WHERE status = 'APPROVED')"
    " SELECT d FROM (SELECT CASE"
    "  WHEN a.payment_id IS NULL THEN format('reservation %s is CONFIRMED: no APPROVED payment'"
    "   || ' (it names %s)', r.reservation_id, r.payment_id)"
    "  WHEN r.reservation_id IS NULL THEN format('payment %s is APPROVED: reservation %s is not"
    " CONFIRMED', a.payment_id, a.reservation_id)"
    "  WHEN r.payment_id <> a.payment_id THEN format('reservation %s names payment %s, the APPROVED"
    " one is %s', r.reservation_id, r.payment_id, a.payment_id)"
    " END AS d FROM r FULL JOIN a ON a.reservation_id = r.reservation_id) x"
    " WHERE d IS NOT NULL ORDER BY d"};

/* Appends s to a PostgreSQL array literal being built in b (from "{"). */
static void array_add(sb_buf_t *b, const char *s)
{
    if (b->len > 1)
        sb_buf_addch(b, ',');
    sb_buf_addch(b, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            sb_buf_addch(b, '\\');
        sb_buf_addch(b, *s);
    }
    sb_buf_addch(b, '"');
}

/* The CONFIRMED reservations, from the reservation service as the admin
 * asking: their ids and payment ids as two array literals. */
static sb_status_t confirmed_reservations(sb_rpc_ctx_t *ctx, sb_buf_t *ids, sb_buf_t *payments)
{
    sb_buf_adds(ids, "{");
    sb_buf_adds(payments, "{");
    const char *token = "";
    for (int page = 0; page < RESERVATION_PAGES_MAX; page++) {
        int64_t t = sb_rpc_remaining_ms(ctx) - 500;
        if (t <= 0)
            return sb_rpc_fail(ctx, SB_UNAVAILABLE, "no time left to read the reservations; try again");
        Sb__Reservation__ListReservationsRequest req = SB__RESERVATION__LIST_RESERVATIONS_REQUEST__INIT;
        req.status = SB__RESERVATION__RESERVATION_STATUS__CONFIRMED;
        req.page_size = RESERVATION_PAGE;
        req.page_token = (char *)token;
        sb_call_opts_t opts = {.timeout_ms = t < LEDGER_TIMEOUT_MS ? t : LEDGER_TIMEOUT_MS,
                               .trace_id = ctx->trace_id,
                               .token = ctx->token};
        Sb__Reservation__ListReservationsResponse *resp = NULL;
        sb_buf_t err = SB_BUF_INIT;
        sb_status_t st = sb_rpc_call(
            sb_channel_get_service("reservation"), &sb__reservation__reservation_service__descriptor,
            "ListReservations", &req.base, ctx->arena, (ProtobufCMessage **)&resp, &opts, &err);
        if (st != SB_OK) {
            sb_warn("ledger check: ListReservations: %s %s", sb_status_name(st), err.buf);
            sb_buf_release(&err);
            return sb_rpc_fail(ctx, SB_UNAVAILABLE, "the reservation service did not answer; try again");
        }
        sb_buf_release(&err);
        for (size_t i = 0; i < resp->n_reservations; i++) {
            array_add(ids, resp->reservations[i]->reservation_id);
            array_add(payments, resp->reservations[i]->payment_id);
        }
        if (!resp->next_page_token || !*resp->next_page_token)
            break;
        token = resp->next_page_token;
    }
    sb_buf_addch(ids, '}');
    sb_buf_addch(payments, '}');
    return SB_OK;
}

sb_status_t pay_check_ledger(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    (void)in;
    Sb__Payment__LedgerReport *rep = out;
    sb_http_response_t totals, charges;
    sb_buf_t err = SB_BUF_INIT;
    int64_t t = sb_rpc_remaining_ms(ctx) - 500;
    if (t > LEDGER_TIMEOUT_MS)
        t = LEDGER_TIMEOUT_MS;
    sb_status_t st = pay_provider_get(ctx->arena, "/v1/admin/totals", t, &totals, &err);
    if (st == SB_OK)
        st = pay_provider_get(ctx->arena, "/v1/admin/charges", t, &charges, &err);
    if (st != SB_OK) {
        sb_warn("ledger check: provider: %s", err.buf);
        sb_buf_release(&err);
        return sb_rpc_fail(ctx, SB_UNAVAILABLE, "the payment provider did not answer; try again");
    }
    sb_buf_release(&err);
    Sb__Provider__Totals *pt = (Sb__Provider__Totals *)pay_provider_decode(
        ctx->arena, &sb__provider__totals__descriptor, totals.body, totals.body_len);
    if (!pt)
        return sb_rpc_fail(ctx, SB_UNAVAILABLE, "the payment provider's totals do not parse");
    sb_buf_t ids = SB_BUF_INIT, pays = SB_BUF_INIT;
    st = confirmed_reservations(ctx, &ids, &pays);
    PGresult *sums = NULL, *diff = NULL, *resv = NULL;
    if (st == SB_OK && (st = sb_db_exec(ctx->db, &stmt_sums, &sums)) == SB_OK) {
        st = sb_db_exec(ctx->db, &stmt_diff, &diff, charges.body);
        if (st == SB_INVALID_ARGUMENT) /* not JSON, not a list: the provider's fault */
            st = sb_rpc_fail(ctx, SB_UNAVAILABLE, "the payment provider's charge list does not parse");
    }
    if (st == SB_OK)
        st = sb_db_exec(ctx->db, &stmt_reservations, &resv, ids.buf, pays.buf);
    sb_buf_release(&ids);
    sb_buf_release(&pays);
    if (st != SB_OK)
        return st;
    rep->provider_charged = pt->charged;
    rep->provider_refunded = pt->refunded;
    rep->platform_charged = strtoll(PQgetvalue(sums, 0, 0), NULL, 10);
    rep->platform_refunded = strtoll(PQgetvalue(sums, 0, 1), NULL, 10);
    size_t n = (size_t)PQntuples(diff), m = (size_t)PQntuples(resv);
    rep->differences = SB_ARENA_NEW(ctx->arena, char *, n + m + 2);
    if (rep->provider_charged != rep->platform_charged)
        rep->differences[rep->n_differences++] =
            sb_arena_printf(ctx->arena, "charged: %lld at the provider, %lld here",
                            (long long)rep->provider_charged, (long long)rep->platform_charged);
    if (rep->provider_refunded != rep->platform_refunded)
        rep->differences[rep->n_differences++] =
            sb_arena_printf(ctx->arena, "refunded: %lld at the provider, %lld here",
                            (long long)rep->provider_refunded, (long long)rep->platform_refunded);
    for (size_t i = 0; i < n; i++)
        rep->differences[rep->n_differences++] = PQgetvalue(diff, (int)i, 0);
    for (size_t i = 0; i < m; i++)
        rep->differences[rep->n_differences++] = PQgetvalue(resv, (int)i, 0);
    rep->clean = rep->n_differences == 0;
    if (!rep->clean)
        sb_warn("ledger check: %zu differences, the first: %s", rep->n_differences, rep->differences[0]);
    return SB_OK;
}
