/* The bounded cache of sb/cache.h: a chained hash table (FNV-1a over group
 * and key, a power-of-two number of buckets fixed at creation), one LRU list
 * across every entry, and per group a list of its entries so a group's
 * invalidation walks that group only. One mutex guards it all: the values
 * are small packed answers and an operation is a hash, a compare and a
 * copy, shorter than any lock-free bookkeeping would be. */
#include "sb/cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sb/alloc.h"

struct entry {
    struct entry *hnext;               /* hash chain */
    struct entry *lru_prev, *lru_next; /* lru_prev: more recently used */
    struct entry *g_prev, *g_next;     /* the group's entries */
    uint64_t hash;
    size_t group;
    int64_t expires_ms;
    size_t klen, vlen;
    char *tag;            /* NULL: none */
    size_t charge;        /* what it counts against max_bytes */
    unsigned char data[]; /* key, then value */
};

struct group {
    struct entry *head;
    uint64_t gen;
};

struct sb_cache {
    pthread_mutex_t mu;
    struct entry **buckets;
    size_t mask;
    struct entry *lru_head, *lru_tail; /* head: most recently used */
    struct group *groups;
    size_t n_groups;
    size_t max_entries, max_bytes;
    sb_cache_stats_t st;
};

static uint64_t hash_of(size_t group, const void *key, size_t klen)
{
    uint64_t h = 1469598103934665603ull;
    const unsigned char *p = key;
    for (size_t i = 0; i < sizeof group; i++) {
        h ^= (unsigned char)(group >> (8 * i));
        h *= 1099511628211ull;
    }
    for (size_t i = 0; i < klen; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

sb_cache_t *sb_cache_new(size_t n_groups, size_t max_entries, size_t max_bytes)
{
    sb_cache_t *c = sb_calloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    size_t nb = 16;
    while (nb < max_entries && nb < ((size_t)1 << 24))
        nb <<= 1;
    c->buckets = sb_calloc(nb, sizeof *c->buckets);
    c->mask = nb - 1;
    c->n_groups = n_groups ? n_groups : 1;
    c->groups = sb_calloc(c->n_groups, sizeof *c->groups);
    c->max_entries = max_entries;
    c->max_bytes = max_bytes;
    return c;
}

/* Unlinks e from every list and frees it; under mu. */
static void drop(sb_cache_t *c, struct entry *e)
{
    struct entry **pp = &c->buckets[e->hash & c->mask];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    if (e->g_prev)
        e->g_prev->g_next = e->g_next;
    else
        c->groups[e->group].head = e->g_next;
    if (e->g_next)
        e->g_next->g_prev = e->g_prev;
    c->st.entries--;
    c->st.bytes -= e->charge;
    free(e->tag);
    free(e);
}

void sb_cache_free(sb_cache_t *c)
{
    if (!c)
        return;
    while (c->lru_head)
        drop(c, c->lru_head);
    free(c->buckets);
    free(c->groups);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static struct entry *find(sb_cache_t *c, uint64_t h, size_t group, const void *key, size_t klen)
{
    for (struct entry *e = c->buckets[h & c->mask]; e; e = e->hnext)
        if (e->hash == h && e->group == group && e->klen == klen && !memcmp(e->data, key, klen))
            return e;
    return NULL;
}

static void lru_front(sb_cache_t *c, struct entry *e)
{
    if (c->lru_head == e)
        return;
    e->lru_prev->lru_next = e->lru_next; /* e is not the head: it has a prev */
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    c->lru_head->lru_prev = e;
    c->lru_head = e;
}

uint64_t sb_cache_generation(sb_cache_t *c, size_t group)
{
    if (group >= c->n_groups)
        return 0;
    pthread_mutex_lock(&c->mu);
    uint64_t g = c->groups[group].gen;
    pthread_mutex_unlock(&c->mu);
    return g;
}

bool sb_cache_get(sb_cache_t *c, size_t group, const void *key, size_t klen, int64_t now_ms,
                  sb_buf_t *out, int64_t *expires_ms)
{
    uint64_t h = hash_of(group, key, klen);
    bool hit = false;
    pthread_mutex_lock(&c->mu);
    struct entry *e = find(c, h, group, key, klen);
    if (e && e->expires_ms <= now_ms) {
        drop(c, e);
        c->st.expired++;
        e = NULL;
    }
    if (e) {
        lru_front(c, e);
        sb_buf_add(out, e->data + e->klen, e->vlen);
        if (expires_ms)
            *expires_ms = e->expires_ms;
        c->st.hits++;
        hit = true;
    } else {
        c->st.misses++;
    }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

bool sb_cache_put(sb_cache_t *c, size_t group, const void *key, size_t klen, const char *tag,
                  const void *value, size_t vlen, int64_t expires_ms, uint64_t gen, size_t *evicted)
{
    size_t charge = sizeof(struct entry) + klen + vlen + (tag ? strlen(tag) + 1 : 0);
    if (group >= c->n_groups || c->max_entries == 0 || charge > c->max_bytes / 4)
        return false;
    uint64_t h = hash_of(group, key, klen);
    struct entry *e = sb_malloc(sizeof *e + klen + vlen);
    memset(e, 0, sizeof *e);
    e->hash = h;
    e->group = group;
    e->expires_ms = expires_ms;
    e->klen = klen;
    e->vlen = vlen;
    e->tag = tag ? sb_strdup(tag) : NULL;
    e->charge = charge;
    memcpy(e->data, key, klen);
    if (vlen)
        memcpy(e->data + klen, value, vlen);

    size_t n_evicted = 0;
    pthread_mutex_lock(&c->mu);
    if (c->groups[group].gen != gen) {
        c->st.stale_puts++;
        pthread_mutex_unlock(&c->mu);
        free(e->tag);
        free(e);
        return false;
    }
    struct entry *old = find(c, h, group, key, klen);
    if (old)
        drop(c, old);
    while (c->lru_tail && (c->st.entries + 1 > c->max_entries || c->st.bytes + charge > c->max_bytes)) {
        drop(c, c->lru_tail);
        n_evicted++;
    }
    struct entry **b = &c->buckets[h & c->mask];
    e->hnext = *b;
    *b = e;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    c->lru_head = e;
    if (!c->lru_tail)
        c->lru_tail = e;
    struct group *g = &c->groups[group];
    e->g_next = g->head;
    if (g->head)
        g->head->g_prev = e;
    g->head = e;
    c->st.entries++;
    c->st.bytes += charge;
    c->st.evictions += n_evicted;
    pthread_mutex_unlock(&c->mu);
    if (evicted)
        *evicted += n_evicted;
    return true;
}

size_t sb_cache_invalidate(sb_cache_t *c, size_t group, const char *tag)
{
    if (group >= c->n_groups)
        return 0;
    size_t n = 0;
    pthread_mutex_lock(&c->mu);
    struct group *g = &c->groups[group];
    g->gen++;
    for (struct entry *e = g->head, *next; e; e = next) {
        next = e->g_next;
        if (!tag || (e->tag && !strcasecmp(e->tag, tag))) {
            drop(c, e);
            n++;
        }
    }
    c->st.invalidations += n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

void sb_cache_stats(sb_cache_t *c, sb_cache_stats_t *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    pthread_mutex_unlock(&c->mu);
}
