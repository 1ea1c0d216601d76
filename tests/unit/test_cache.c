/* The bounded cache (sb/cache.h), the API table's cache options as the
 * runtime reads them (sb/rpc_cache.h) and the gateway's ETag helpers
 * (gateway/etag.c). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "gateway.h"
#include "reservation.pb-c.h"
#include "sb/api.h"
#include "sb/cache.h"
#include "sb/rpc_cache.h"

#define K(s) (s), strlen(s)

static bool get_str(sb_cache_t *c, size_t g, const char *key, int64_t now, sb_buf_t *out)
{
    sb_buf_reset(out);
    return sb_cache_get(c, g, K(key), now, out, NULL);
}

Test(cache, put_get_and_expiry)
{
    sb_cache_t *c = sb_cache_new(2, 100, 1 << 20);
    sb_buf_t v = SB_BUF_INIT;
    cr_assert(!get_str(c, 0, "a", 0, &v));
    cr_assert(sb_cache_put(c, 0, K("a"), NULL, K("alpha"), 1000, sb_cache_generation(c, 0), NULL));
    cr_assert(get_str(c, 0, "a", 999, &v));
    cr_assert_str_eq(v.buf, "alpha");
    cr_assert(!get_str(c, 1, "a", 0, &v), "groups are apart");
    cr_assert(!get_str(c, 0, "a", 1000, &v), "expired at its expiry");
    cr_assert(!get_str(c, 0, "a", 0, &v), "an expired entry is dropped");
    /* a put replaces */
    sb_cache_put(c, 0, K("a"), NULL, K("one"), 10, 0, NULL);
    sb_cache_put(c, 0, K("a"), NULL, K("two"), 10, 0, NULL);
    cr_assert(get_str(c, 0, "a", 0, &v));
    cr_assert_str_eq(v.buf, "two");
    sb_cache_stats_t st;
    sb_cache_stats(c, &st);
    cr_assert_eq(st.entries, 1);
    cr_assert_eq(st.expired, 1);
    sb_buf_release(&v);
    sb_cache_free(c);
}

Test(cache, entry_bound_evicts_least_recently_used)
{
    sb_cache_t *c = sb_cache_new(1, 3, 1 << 20);
    sb_buf_t v = SB_BUF_INIT;
    size_t evicted = 0;
    sb_cache_put(c, 0, K("a"), NULL, K("1"), 100, 0, &evicted);
    sb_cache_put(c, 0, K("b"), NULL, K("2"), 100, 0, &evicted);
    sb_cache_put(c, 0, K("c"), NULL, K("3"), 100, 0, &evicted);
    cr_assert(get_str(c, 0, "a", 0, &v)); /* a is now the most recent: b goes first */
    sb_cache_put(c, 0, K("d"), NULL, K("4"), 100, 0, &evicted);
    cr_assert_eq(evicted, 1);
    cr_assert(!get_str(c, 0, "b", 0, &v));
    cr_assert(get_str(c, 0, "a", 0, &v));
    cr_assert(get_str(c, 0, "c", 0, &v));
    cr_assert(get_str(c, 0, "d", 0, &v));
    sb_cache_stats_t st;
    sb_cache_stats(c, &st);
    cr_assert_eq(st.entries, 3);
    cr_assert_eq(st.evictions, 1);
    sb_buf_release(&v);
    sb_cache_free(c);
}

Test(cache, byte_bound)
{
    char big[1000];
    memset(big, 'x', sizeof big);
    sb_cache_t *c = sb_cache_new(1, 1000, 8192);
    size_t evicted = 0;
    for (int i = 0; i < 20; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        cr_assert(sb_cache_put(c, 0, K(key), NULL, big, sizeof big, 100, 0, &evicted));
    }
    sb_cache_stats_t st;
    sb_cache_stats(c, &st);
    cr_assert_leq(st.bytes, 8192);
    cr_assert_gt(evicted, 10);
    cr_assert_eq(st.entries + evicted, 20);
    /* a value over a quarter of the bound is not kept */
    char huge[3000];
    memset(huge, 'y', sizeof huge);
    cr_assert(!sb_cache_put(c, 0, K("huge"), NULL, huge, sizeof huge, 100, 0, NULL));
    sb_cache_free(c);
}

Test(cache, invalidate_by_tag_or_group)
{
    sb_cache_t *c = sb_cache_new(2, 100, 1 << 20);
    sb_buf_t v = SB_BUF_INIT;
    sb_cache_put(c, 0, K("s1-a"), "AAAA-1", K("x"), 100, 0, NULL);
    sb_cache_put(c, 0, K("s1-b"), "aaaa-1", K("x"), 100, 0, NULL);
    sb_cache_put(c, 0, K("s2"), "bbbb-2", K("x"), 100, 0, NULL);
    sb_cache_put(c, 0, K("none"), NULL, K("x"), 100, 0, NULL);
    sb_cache_put(c, 1, K("other"), "aaaa-1", K("x"), 100, 0, NULL);
    cr_assert_eq(sb_cache_invalidate(c, 0, "aaaa-1"), 2, "by tag, ignoring case");
    cr_assert(!get_str(c, 0, "s1-a", 0, &v));
    cr_assert(!get_str(c, 0, "s1-b", 0, &v));
    cr_assert(get_str(c, 0, "s2", 0, &v));
    cr_assert(get_str(c, 0, "none", 0, &v));
    cr_assert(get_str(c, 1, "other", 0, &v), "another group keeps its entries");
    cr_assert_eq(sb_cache_invalidate(c, 0, NULL), 2, "the whole group");
    cr_assert(!get_str(c, 0, "s2", 0, &v));
    cr_assert(get_str(c, 1, "other", 0, &v));
    sb_buf_release(&v);
    sb_cache_free(c);
}

/* A fill that read its source before an invalidation is not stored after it. */
Test(cache, stale_fill_is_dropped)
{
    sb_cache_t *c = sb_cache_new(1, 100, 1 << 20);
    sb_buf_t v = SB_BUF_INIT;
    uint64_t gen = sb_cache_generation(c, 0);
    sb_cache_invalidate(c, 0, "zzz"); /* even one that dropped nothing */
    cr_assert(!sb_cache_put(c, 0, K("a"), NULL, K("old"), 100, gen, NULL));
    cr_assert(!get_str(c, 0, "a", 0, &v));
    cr_assert(sb_cache_put(c, 0, K("a"), NULL, K("new"), 100, sb_cache_generation(c, 0), NULL));
    sb_cache_stats_t st;
    sb_cache_stats(c, &st);
    cr_assert_eq(st.stale_puts, 1);
    sb_buf_release(&v);
    sb_cache_free(c);
}

Test(cache, zero_entries_keeps_nothing)
{
    sb_cache_t *c = sb_cache_new(1, 0, 1 << 20);
    cr_assert(!sb_cache_put(c, 0, K("a"), NULL, K("x"), 100, 0, NULL));
    sb_cache_free(c);
}

/* --------------------------------------------------- the contract's options */

static const sb_api_method_t *row(const char *svc, const char *m)
{
    const sb_api_method_t *r = sb_api_find(svc, m);
    cr_assert_not_null(r, "%s/%s", svc, m);
    return r;
}

Test(cache, contract_declares_the_cached_reads)
{
    const sb_api_method_t *seat = row("sb.reservation.ReservationService", "GetSeatMap");
    cr_assert_gt(seat->cache.max_age_ms, 0);
    cr_assert(seat->cache.public_);
    cr_assert_str_eq(seat->cache.key_field, "schedule_id");
    const sb_api_method_t *perf = row("sb.performance.PerformanceService", "GetPerformance");
    cr_assert_gt(perf->cache.max_age_ms, 0);
    cr_assert(!perf->cache.public_, "its answer depends on the caller");
    cr_assert(row("sb.performance.PerformanceService", "ListPerformances")->cache.max_age_ms);
    cr_assert(row("sb.reservation.ReservationService", "ListBookable")->cache.max_age_ms);
    /* per-user reads are never cached */
    cr_assert_eq(row("sb.reservation.ReservationService", "GetReservation")->cache.max_age_ms, 0);
    cr_assert_eq(row("sb.reservation.ReservationService", "ListMemberReservations")->cache.max_age_ms,
                 0);
    /* only GETs carry the option */
    for (size_t i = 0; i < sb_api_n_methods; i++)
        if (sb_api_methods[i].cache.max_age_ms)
            for (size_t h = 0; h < sb_api_methods[i].n_http; h++)
                cr_assert_str_eq(sb_api_methods[i].http[h].verb, "GET", "%s",
                                 sb_api_methods[i].rpc->name);
}

Test(cache, event_types_match_entries)
{
    cr_assert(sb_rpc_cache_event_matches("performance.", "performance.changed"));
    cr_assert(!sb_rpc_cache_event_matches("performance.", "performances.x"));
    cr_assert(sb_rpc_cache_event_matches("member.withdrawn", "member.withdrawn"));
    cr_assert(!sb_rpc_cache_event_matches("member.withdrawn", "member.withdrawn2"));
    cr_assert(!sb_rpc_cache_event_matches("member.withdrawn", "member."));
}

/* The runtime's hooks on the process cache: a finished hold clears its
 * schedule's seat map only; an event clears the whole method. */
Test(cache, runtime_hooks_clear_what_the_contract_says)
{
    const sb_api_method_t *seat = row("sb.reservation.ReservationService", "GetSeatMap");
    const sb_api_method_t *hold = row("sb.reservation.ReservationService", "CreateReservation");
    cr_assert_not_null(sb_rpc_cache());
    sb_rpc_ctx_t ctx = {.user_id = "", .user_role = "", .caller_service = ""};
    sb_buf_t answer = SB_BUF_INIT;
    const char *sids[] = {"11111111-1111-4111-8111-111111111111",
                          "22222222-2222-4222-8222-222222222222"};
    for (int i = 0; i < 2; i++) {
        Sb__Reservation__GetSeatMapRequest req = SB__RESERVATION__GET_SEAT_MAP_REQUEST__INIT;
        req.schedule_id = (char *)sids[i];
        uint8_t bytes[64];
        size_t n = sb__reservation__get_seat_map_request__pack(&req, bytes);
        sb_rpc_cache_call_t cc;
        cr_assert(!sb_rpc_cache_lookup(&cc, seat, &ctx, &req.base, bytes, n, &answer));
        sb_rpc_cache_store(&cc, "map", 3, -1);
        sb_rpc_cache_call_release(&cc);
        cr_assert(sb_rpc_cache_lookup(&cc, seat, &ctx, &req.base, bytes, n, &answer));
        sb_rpc_cache_call_release(&cc);
    }
    cr_assert_str_eq(answer.buf, "mapmap");

    Sb__Reservation__CreateReservationRequest h = SB__RESERVATION__CREATE_RESERVATION_REQUEST__INIT;
    h.schedule_id = "11111111-1111-4111-8111-111111111111";
    sb_rpc_cache_after_call(hold, &h.base);
    for (int i = 0; i < 2; i++) {
        Sb__Reservation__GetSeatMapRequest req = SB__RESERVATION__GET_SEAT_MAP_REQUEST__INIT;
        req.schedule_id = (char *)sids[i];
        uint8_t bytes[64];
        size_t n = sb__reservation__get_seat_map_request__pack(&req, bytes);
        sb_rpc_cache_call_t cc;
        bool hit = sb_rpc_cache_lookup(&cc, seat, &ctx, &req.base, bytes, n, &answer);
        sb_rpc_cache_call_release(&cc);
        cr_assert_eq(hit, i == 1, "the hold's schedule only (schedule %d)", i);
    }
    sb_rpc_cache_event("payment.approved", "33333333-3333-4333-8333-333333333333");
    Sb__Reservation__GetSeatMapRequest req = SB__RESERVATION__GET_SEAT_MAP_REQUEST__INIT;
    req.schedule_id = (char *)sids[1];
    uint8_t bytes[64];
    size_t n = sb__reservation__get_seat_map_request__pack(&req, bytes);
    sb_rpc_cache_call_t cc;
    cr_assert(!sb_rpc_cache_lookup(&cc, seat, &ctx, &req.base, bytes, n, &answer),
              "an event clears all");
    sb_rpc_cache_call_release(&cc);
    sb_buf_release(&answer);
}

/* A method whose answer depends on the caller keeps one entry per principal. */
Test(cache, private_answers_are_keyed_by_principal)
{
    const sb_api_method_t *perf = row("sb.performance.PerformanceService", "GetPerformance");
    uint8_t bytes[] = {0x0a, 0x01, 'x'};
    sb_buf_t answer = SB_BUF_INIT;
    sb_rpc_ctx_t alice = {.user_id = "aaaa", .user_role = "PLANNER", .caller_service = "gateway"};
    sb_rpc_ctx_t bob = {.user_id = "bbbb", .user_role = "USER", .caller_service = "gateway"};
    sb_rpc_ctx_t anon = {.user_id = "", .user_role = "", .caller_service = "gateway"};
    sb_rpc_cache_call_t cc;
    cr_assert(!sb_rpc_cache_lookup(&cc, perf, &alice, NULL, bytes, sizeof bytes, &answer));
    sb_rpc_cache_store(&cc, "alice's", 7, -1);
    sb_rpc_cache_call_release(&cc);
    cr_assert(!sb_rpc_cache_lookup(&cc, perf, &bob, NULL, bytes, sizeof bytes, &answer));
    sb_rpc_cache_call_release(&cc);
    cr_assert(!sb_rpc_cache_lookup(&cc, perf, &anon, NULL, bytes, sizeof bytes, &answer));
    sb_rpc_cache_call_release(&cc);
    cr_assert(sb_rpc_cache_lookup(&cc, perf, &alice, NULL, bytes, sizeof bytes, &answer));
    sb_rpc_cache_call_release(&cc);
    cr_assert_str_eq(answer.buf, "alice's");
    sb_buf_release(&answer);
}

/* ------------------------------------------------------------ gateway ETag */

Test(etag, strong_tag_of_the_body)
{
    char a[GW_ETAG_LEN + 1], b[GW_ETAG_LEN + 1], c[GW_ETAG_LEN + 1];
    gw_etag_of(K("{\"x\":1}"), a);
    gw_etag_of(K("{\"x\":1}"), b);
    gw_etag_of(K("{\"x\":2}"), c);
    cr_assert_eq(strlen(a), GW_ETAG_LEN);
    cr_assert_eq(a[0], '"');
    cr_assert_str_eq(a, b);
    cr_assert_str_neq(a, c);
}

Test(etag, if_none_match_lists)
{
    const char *t = "\"0123456789abcdef\"";
    cr_assert(gw_etag_matches(t, t));
    cr_assert(gw_etag_matches("*", t));
    cr_assert(gw_etag_matches("W/\"0123456789abcdef\"", t));
    cr_assert(gw_etag_matches("\"aaaa\", \"0123456789abcdef\"", t));
    cr_assert(!gw_etag_matches("\"0123456789abcdee\"", t));
    cr_assert(!gw_etag_matches("\"0123456789abcdef", t));
    cr_assert(!gw_etag_matches("", t));
    cr_assert(!gw_etag_matches(NULL, t));
}

Test(etag, headers_and_304)
{
    const sb_api_method_t *perf = row("sb.performance.PerformanceService", "GetPerformance");
    const sb_api_method_t *seat = row("sb.reservation.ReservationService", "GetSeatMap");
    sb_buf_t body = SB_BUF_INIT;
    sb_buf_adds(&body, "{\"a\":1}");
    gw_cache_headers_t h;
    int code = 200;
    cr_assert(gw_cache_headers(seat, "GET", true, NULL, &code, &body, &h));
    cr_assert_eq(code, 200);
    cr_assert_str_eq(h.cache_control, "public, max-age=1");
    cr_assert_null(h.vary);
    char tag[GW_ETAG_LEN + 1];
    strcpy(tag, h.etag);
    cr_assert(gw_cache_headers(perf, "GET", true, NULL, &code, &body, &h));
    cr_assert_str_eq(h.cache_control, "private, no-cache", "a signed-in caller's own view");
    cr_assert_str_eq(h.vary, "Authorization");
    cr_assert(gw_cache_headers(perf, "GET", false, NULL, &code, &body, &h));
    cr_assert_str_eq(h.cache_control, "public, max-age=1");
    cr_assert(gw_cache_headers(perf, "GET", false, tag, &code, &body, &h));
    cr_assert_eq(code, 304);
    cr_assert_eq(body.len, 0);
    code = 404;
    cr_assert(!gw_cache_headers(perf, "GET", false, tag, &code, &body, &h), "errors are not cached");
    code = 200;
    cr_assert(!gw_cache_headers(row("sb.reservation.ReservationService", "GetReservation"), "GET", true,
                                NULL, &code, &body, &h));
    sb_buf_release(&body);
}

/* An answer kept from another cache's answer lives only for what is left of
 * that one's age (ttl_ms), never longer than the method's max age; a hit
 * reports how long the entry stays fresh. */
Test(cache, store_keeps_no_more_than_the_remaining_age)
{
    const sb_api_method_t *seat = row("sb.reservation.ReservationService", "GetSeatMap");
    cr_assert_eq(seat->cache.max_age_ms, 1000);
    sb_rpc_ctx_t ctx = {.user_id = "", .user_role = "", .caller_service = ""};
    const char *sids[] = {"33333333-3333-4333-8333-333333333333", "44444444-4444-4444-8444-444444444444",
                          "55555555-5555-4555-8555-555555555555",
                          "66666666-6666-4666-8666-666666666666"};
    const int64_t ttls[] = {250, -1, 60000, 0};
    for (int i = 0; i < 4; i++) {
        Sb__Reservation__GetSeatMapRequest req = SB__RESERVATION__GET_SEAT_MAP_REQUEST__INIT;
        req.schedule_id = (char *)sids[i];
        uint8_t bytes[64];
        size_t n = sb__reservation__get_seat_map_request__pack(&req, bytes);
        sb_buf_t answer = SB_BUF_INIT;
        sb_rpc_cache_call_t cc;
        cr_assert(!sb_rpc_cache_lookup(&cc, seat, &ctx, &req.base, bytes, n, &answer));
        sb_rpc_cache_store(&cc, "map", 3, ttls[i]);
        sb_rpc_cache_call_release(&cc);
        bool hit = sb_rpc_cache_lookup(&cc, seat, &ctx, &req.base, bytes, n, &answer);
        sb_rpc_cache_call_release(&cc);
        sb_buf_release(&answer);
        if (ttls[i] == 0) {
            cr_assert(!hit, "ttl 0: not kept");
            continue;
        }
        cr_assert(hit);
        int64_t want = ttls[i] == 250 ? 250 : 1000; /* -1 and over max age: the max age */
        cr_assert(cc.ttl_ms > want - 200 && cc.ttl_ms <= want, "ttl %lld, want about %lld",
                  (long long)cc.ttl_ms, (long long)want);
    }
}
