/* Cached RPC answers: the runtime's side of (sb.api.method).cache
 * (proto/sb/api/options.proto, sb_api_cache_t in sb/api.h).
 *
 * One cache per process (sb/cache.h), sized by RPC_CACHE_MAX_ENTRIES
 * (default 10,000; 0 turns caching off) and RPC_CACHE_MAX_BYTES (default
 * 64 MiB). The gRPC server (rpc_server.c) asks it after the access check and
 * before the handler; on a miss it stores the packed OK answer for the
 * method's max_age_ms. Key: the method, then, unless the method's cache is
 * public, the verified caller (user id, role, calling service: an answer
 * that may depend on who asks is only ever served to the same principal;
 * anonymous callers share one principal), then the packed request bytes as
 * received.
 *
 * Invalidation, in this process, after the change is committed:
 *   - sb_rpc_cache_after_call: a call of a method that another method's
 *     invalidated_by_rpcs names has finished (OK or refused: a refused hold
 *     has seen a seat that another hold took), by key_field's value when the
 *     finished call's request has that field, else the whole method;
 *   - sb_rpc_cache_event: an event was handled and committed (inbox.c), for
 *     every method whose invalidated_by names its type, by aggregate id when
 *     key_is_aggregate, else the whole method.
 * A fill that began before an invalidation is not stored (the generation of
 * sb/cache.h). Changes made in other processes (another replica, a job of
 * this one that emits no event this process consumes) are seen within
 * max_age_ms: that is the stated lag bound.
 *
 * The gateway runs the same cache in its process, keeping JSON bodies
 * (cached_answer in gateway/server.c); a service answering from its cache
 * says how long the answer stays fresh (SB_MD_CACHE_TTL, sb/rpc.h), and the
 * gateway keeps it no longer, so the lag bound is max_age_ms end to end.
 *
 * Metrics: sb_rpc_cache_requests_total{method,result="hit"|"miss"},
 * sb_rpc_cache_invalidated_total{method}, sb_rpc_cache_evictions_total and
 * the gauges sb_rpc_cache_entries, sb_rpc_cache_bytes. */
#ifndef SB_RPC_CACHE_H
#define SB_RPC_CACHE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "sb/api.h"
#include "sb/buf.h"
#include "sb/cache.h"
#include "sb/rpc.h"

/* One call's look-up, kept for its store. */
typedef struct sb_rpc_cache_call {
    const sb_api_method_t *api; /* NULL: the call is not cached */
    sb_buf_t key;
    const char *tag; /* key_field's value, borrowed from the request; NULL: none */
    uint64_t gen;
    int64_t ttl_ms; /* after a hit: how long the answer stays fresh (> 0) */
} sb_rpc_cache_call_t;

/* Before the handler of api (the access check passed): true with the
 * cached answer appended to answer when there is one. Otherwise cc is made
 * ready for sb_rpc_cache_store (cc->api NULL when the method is not
 * cached). data/len: the packed request as received; req: it unpacked.
 * Release cc with sb_rpc_cache_call_release either way. */
bool sb_rpc_cache_lookup(sb_rpc_cache_call_t *cc, const sb_api_method_t *api, const sb_rpc_ctx_t *ctx,
                         const ProtobufCMessage *req, const void *data, size_t len, sb_buf_t *answer);
/* After the handler answered OK: keeps the answer for the method's
 * max_age_ms, or for ttl_ms when that is shorter: an answer that came out
 * of another cache (the gateway's fill from a service's cached answer,
 * SB_MD_CACHE_TTL) keeps only what is left of its age, so caches in a row
 * never add up their ages. ttl_ms < 0: the full max age; 0: not kept. */
void sb_rpc_cache_store(sb_rpc_cache_call_t *cc, const void *answer, size_t len, int64_t ttl_ms);
void sb_rpc_cache_call_release(sb_rpc_cache_call_t *cc);

/* A call of api has finished, whatever its status: clears the answers of the
 * methods whose invalidated_by_rpcs name it (see above). */
void sb_rpc_cache_after_call(const sb_api_method_t *api, const ProtobufCMessage *req);

/* An event of type with aggregate_id was handled and its transaction
 * committed: clears the answers of the methods whose invalidated_by names it. */
void sb_rpc_cache_event(const char *type, const char *aggregate_id);

/* The process's cache (NULL when RPC_CACHE_MAX_ENTRIES=0): for tests and stats. */
sb_cache_t *sb_rpc_cache(void);

/* true when an event type matches an invalidated_by entry: equal, or the
 * entry ends in '.' and prefixes the type. */
bool sb_rpc_cache_event_matches(const char *entry, const char *type);

#endif
