/* A bounded in-memory cache of byte strings with expiry, LRU eviction and
 * invalidation by group and tag: the store behind the runtime's cached RPC
 * answers (sb/rpc_cache.h), kept generic so it is unit-tested on its own.
 *
 * An entry is (group, key) -> value, with a tag (what it is about, e.g. a
 * schedule id; may be NULL) and an absolute expiry. Groups are small numbers
 * the caller assigns (the runtime: a method's index in the API table).
 *
 * Invalidation races: a reader that misses computes the value from a source
 * that a writer may change before the reader stores it. The reader takes
 * the group's generation before it reads the source (sb_cache_generation)
 * and passes it to sb_cache_put; every invalidation of the group bumps the
 * generation, and a put carrying an older one is dropped. So a value read
 * before a change committed is never stored after that change's
 * invalidation.
 *
 * Thread-safe (one mutex; values are copied in and out under it). */
#ifndef SB_CACHE_H
#define SB_CACHE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"

typedef struct sb_cache sb_cache_t;

typedef struct sb_cache_stats {
    uint64_t hits, misses;
    uint64_t expired;       /* misses that found an entry past its expiry */
    uint64_t evictions;     /* entries dropped to stay within the bounds */
    uint64_t invalidations; /* entries dropped by sb_cache_invalidate */
    uint64_t stale_puts;    /* puts dropped for an old generation */
    size_t entries, bytes;  /* now */
} sb_cache_stats_t;

/* Holds at most max_entries entries and max_bytes bytes (keys, values, tags
 * and per-entry overhead); a single value over max_bytes / 4 is not kept.
 * Groups are 0 .. n_groups - 1. Caller frees with sb_cache_free. */
sb_cache_t *sb_cache_new(size_t n_groups, size_t max_entries, size_t max_bytes);
void sb_cache_free(sb_cache_t *c);

/* The group's generation, to pass to sb_cache_put (take it before reading
 * the source of the value). */
uint64_t sb_cache_generation(sb_cache_t *c, size_t group);

/* true and the value appended to out when (group, key) is present and not
 * expired at now_ms (the entry becomes the most recently used), with its
 * expiry in *expires_ms when not NULL; an expired entry is dropped. */
bool sb_cache_get(sb_cache_t *c, size_t group, const void *key, size_t klen, int64_t now_ms,
                  sb_buf_t *out, int64_t *expires_ms);

/* Stores a copy of value under (group, key), replacing an entry there, with
 * tag (copied; NULL: none) and expiry expires_ms, evicting least recently
 * used entries to stay within the bounds (their number added to *evicted
 * when not NULL). Dropped (false) when gen is not the group's generation
 * any more or the value is too large. */
bool sb_cache_put(sb_cache_t *c, size_t group, const void *key, size_t klen, const char *tag,
                  const void *value, size_t vlen, int64_t expires_ms, uint64_t gen, size_t *evicted);

/* Drops the group's entries whose tag equals tag (ignoring ASCII case; the
 * ids are UUIDs), or every entry of the group when tag is NULL, and bumps
 * the group's generation either way. Returns how many were dropped. */
size_t sb_cache_invalidate(sb_cache_t *c, size_t group, const char *tag);

void sb_cache_stats(sb_cache_t *c, sb_cache_stats_t *out);

#endif
