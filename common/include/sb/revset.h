/* A bounded in-memory set of revocations: the local copy of the Redis
 * denylist (sb/authn.h has its keys and values) that sb_authn_verify reads
 * without network I/O while it is current (sb/denylist.h keeps it so).
 *
 * An entry is a denylist key ("sb:deny:<jti>" or "sb:deny-user:<user id>"),
 * what it revokes (the token; every token of the user; the user's tokens
 * issued before a unix ms) and its expiry (wall clock ms: the revoked
 * token's own expiry, the entry's PX in Redis). Putting a key that is there
 * merges the two as the auth service merges revocation rows: "every token"
 * stays every token, a later cut-off wins, the later expiry wins; so the
 * order in which a load and the published revocations arrive does not
 * matter. An expired entry revokes nothing and is removed by the sweep (or
 * when a put finds the set full).
 *
 * Bounded: at most `max` entries; a put beyond answers false and changes
 * nothing (the caller stops trusting the set). A hash table with chaining
 * (memory grows with the entries, about 100 bytes each), behind a
 * reader-writer lock: thread-safe. */
#ifndef SB_REVSET_H
#define SB_REVSET_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sb_revset sb_revset_t;

sb_revset_t *sb_revset_new(size_t max); /* caller frees with sb_revset_free */
void sb_revset_free(sb_revset_t *s);
/* Adds (or merges) the entry key = value expiring at expires_ms. A key of
 * neither prefix is ignored (true). A user value that is neither "all" nor
 * a unix ms counts as "all" (as sb_authn_verify reads Redis). false when the
 * set is full (max unexpired entries). */
bool sb_revset_put(sb_revset_t *s, const char *key, const char *value, int64_t expires_ms,
                   int64_t now_ms);
/* Whether an unexpired entry revokes the token jti of user sub issued at
 * iat_ms. */
bool sb_revset_revoked(sb_revset_t *s, const char *jti, const char *sub, int64_t iat_ms, int64_t now_ms);
/* Removes the expired entries of up to max_buckets buckets from where the
 * last sweep stopped (0: all of them); the number removed. */
size_t sb_revset_sweep(sb_revset_t *s, int64_t now_ms, size_t max_buckets);
size_t sb_revset_size(sb_revset_t *s); /* entries held, expired ones not yet swept included */
size_t sb_revset_max(const sb_revset_t *s);
void sb_revset_clear(sb_revset_t *s);

#endif
