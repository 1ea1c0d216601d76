/* The local denylist: a copy of the Redis denylist (sb/authn.h) in this
 * process, kept current by a subscription, so that sb_authn_verify checks
 * revocation without a Redis round trip while the copy is known current.
 *
 * The auth service publishes every entry it writes on the namespace's
 * channel (sb_denylist_channel) in the same Lua script as the SET: an entry
 * is never stored unannounced. A thread of this module, on a Redis
 * connection of its own, SUBSCRIBEs first, then loads every entry (SCAN),
 * so nothing published during the load is missed, and then applies each
 * message to a bounded set (sb/revset.h).
 *
 * "Current" is a lease: the thread sends PING on the subscription every
 * TICK_MS; the pong proves every message published before the PING has
 * been applied, and extends the lease to the PING's send time + LEASE_MS
 * (800 ms) as long as the marker (sb_denylist_marker) is still the one seen
 * at the load. A request reads the set only within the lease; otherwise it
 * asks Redis as before (sb_denylist_check answers false): fail closed
 * (UNAVAILABLE) when Redis cannot answer or the marker is missing. So:
 *   - a revocation is refused everywhere within a second: at once by every
 *     process whose subscription is up, and by one whose subscription broke
 *     (connection lost, CLIENT KILL, a Redis that stalls or a network that
 *     drops packets) when its lease runs out, at most LEASE_MS after the
 *     last pong, after which it asks Redis per request;
 *   - a Redis that restarted (empty) drops the subscription; the thread
 *     reconnects, resubscribes and reloads once the marker is back (auth has
 *     rebuilt the denylist); until then every call asks Redis, which answers
 *     "incomplete" (503). A marker that changes or goes without a restart
 *     (FLUSHALL) is seen by the check of each tick: stale, reload.
 *   - more than REVOCATION_CACHE_MAX entries (default 1,000,000; 0 turns the
 *     local denylist off): the set is dropped, logged, and every call asks
 *     Redis; the load is tried again every OVERFLOW_RETRY_MS (30 s).
 * Metrics: sb_authn_revocations_cached (entries), sb_authn_revocations_live
 * (1 while the lease holds), sb_authn_revocations_overflows_total,
 * sb_authn_revocations_reloads_total; sb_authn_denylist_fallbacks_total
 * (authn.c) counts the calls that asked Redis instead. */
#ifndef SB_DENYLIST_H
#define SB_DENYLIST_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/redis.h"

typedef struct sb_denylist sb_denylist_t;

/* Starts the subscriber thread against redis (borrowed: the pool used for
 * the load and the marker, and the server its own connection goes to) with
 * a set of at most max entries. Caller stops and frees with sb_denylist_stop. */
sb_denylist_t *sb_denylist_start(sb_redis_t *redis, size_t max);
void sb_denylist_stop(sb_denylist_t *d);
/* true when the local copy is current (within its lease): *revoked says
 * whether the token (jti, sub, iat_ms) is revoked. false: ask Redis. */
bool sb_denylist_check(sb_denylist_t *d, const char *jti, const char *sub, int64_t iat_ms,
                       bool *revoked);
/* Whether the lease holds now (tests, health). */
bool sb_denylist_live(sb_denylist_t *d);
/* The channel of this process's namespace into out (n >= 64):
 * "sb:deny-events" or "sb:deny-events:<ns>". A message is one entry,
 * "<key>\t<value>\t<px>" (the SET's key, value and PX). */
void sb_denylist_channel(char *out, size_t n);

#endif
