/* The bounded revocation set; see sb/revset.h.
 *
 * Chaining on a power-of-two bucket array that doubles when the entries
 * outnumber the buckets (so a lookup walks about one node). A node holds the
 * full denylist key, its hash, expiry and cut-off: a token entry and a user
 * entry of "all" have the cut-off INT64_MAX (every token was issued before
 * it), a password change's entry its unix ms. One rule then answers both:
 * revoked when the node is unexpired and iat_ms < cut-off. */
#include "sb/revset.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/alloc.h"
#include "sb/authn.h"
#include "sb/log.h"

#define BUCKETS_MIN 1024

struct node {
    struct node *next;
    uint64_t hash;
    int64_t expires_ms;
    int64_t cutoff_ms;
    char key[];
};

struct sb_revset {
    pthread_rwlock_t mu;
    struct node **buckets;
    size_t n_buckets; /* power of two */
    size_t count;
    size_t max;
    size_t sweep_at; /* the next bucket the sweep visits */
};

static uint64_t hash_key(const char *k)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 1099511628211ULL;
    return h;
}

sb_revset_t *sb_revset_new(size_t max)
{
    sb_revset_t *s = sb_calloc(1, sizeof *s);
    pthread_rwlock_init(&s->mu, NULL);
    s->n_buckets = BUCKETS_MIN;
    s->buckets = sb_calloc(s->n_buckets, sizeof *s->buckets);
    s->max = max;
    return s;
}

/* Frees every node (under the write lock or with s private). */
static void drop_all(sb_revset_t *s)
{
    for (size_t i = 0; i < s->n_buckets; i++) {
        struct node *n = s->buckets[i];
        while (n) {
            struct node *next = n->next;
            free(n);
            n = next;
        }
        s->buckets[i] = NULL;
    }
    s->count = 0;
    s->sweep_at = 0;
}

void sb_revset_free(sb_revset_t *s)
{
    if (!s)
        return;
    drop_all(s);
    free(s->buckets);
    pthread_rwlock_destroy(&s->mu);
    free(s);
}

void sb_revset_clear(sb_revset_t *s)
{
    pthread_rwlock_wrlock(&s->mu);
    drop_all(s);
    pthread_rwlock_unlock(&s->mu);
}

size_t sb_revset_size(sb_revset_t *s)
{
    pthread_rwlock_rdlock(&s->mu);
    size_t n = s->count;
    pthread_rwlock_unlock(&s->mu);
    return n;
}

size_t sb_revset_max(const sb_revset_t *s)
{
    return s->max;
}

/* The node of key (hash h), NULL when absent; under either lock. */
static struct node *find(const sb_revset_t *s, const char *key, uint64_t h)
{
    for (struct node *n = s->buckets[h & (s->n_buckets - 1)]; n; n = n->next)
        if (n->hash == h && strcmp(n->key, key) == 0)
            return n;
    return NULL;
}

/* Removes the expired nodes of `count` buckets from bucket `from`; under
 * the write lock. The number removed. */
static size_t sweep_locked(sb_revset_t *s, int64_t now_ms, size_t from, size_t count)
{
    size_t removed = 0;
    for (size_t i = 0; i < count; i++) {
        struct node **p = &s->buckets[(from + i) & (s->n_buckets - 1)];
        while (*p) {
            struct node *n = *p;
            if (n->expires_ms <= now_ms) {
                *p = n->next;
                free(n);
                removed++;
            } else {
                p = &n->next;
            }
        }
    }
    s->count -= removed;
    return removed;
}

/* Doubles the buckets; under the write lock. */
static void grow(sb_revset_t *s)
{
    size_t nb = s->n_buckets * 2;
    struct node **b = sb_calloc(nb, sizeof *b);
    for (size_t i = 0; i < s->n_buckets; i++) {
        struct node *n = s->buckets[i];
        while (n) {
            struct node *next = n->next;
            n->next = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
            n = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->n_buckets = nb;
    s->sweep_at = 0;
}

bool sb_revset_put(sb_revset_t *s, const char *key, const char *value, int64_t expires_ms,
                   int64_t now_ms)
{
    int64_t cutoff = INT64_MAX;
    if (!strncmp(key, SB_DENY_USER_PREFIX, strlen(SB_DENY_USER_PREFIX))) {
        char *end = NULL;
        long long v = strcmp(value, SB_DENY_USER_ALL) ? strtoll(value, &end, 10) : 0;
        if (end && end != value && !*end)
            cutoff = v;
        else if (end)
            sb_error("denylist entry %s does not parse (\"%.32s\"): every token of the user refused",
                     key, value);
    } else if (strncmp(key, SB_DENY_TOKEN_PREFIX, strlen(SB_DENY_TOKEN_PREFIX)) != 0) {
        return true; /* not a revocation */
    }
    if (expires_ms <= now_ms)
        return true; /* revokes nothing any more */
    uint64_t h = hash_key(key);
    bool ok = true;
    pthread_rwlock_wrlock(&s->mu);
    struct node *n = find(s, key, h);
    if (n && n->expires_ms > now_ms) {
        if (cutoff > n->cutoff_ms)
            n->cutoff_ms = cutoff;
        if (expires_ms > n->expires_ms)
            n->expires_ms = expires_ms;
    } else if (n) { /* expired: replaced */
        n->cutoff_ms = cutoff;
        n->expires_ms = expires_ms;
    } else {
        if (s->count >= s->max)
            sweep_locked(s, now_ms, 0, s->n_buckets);
        if (s->count >= s->max) {
            ok = false;
        } else {
            size_t kl = strlen(key);
            n = sb_malloc(sizeof *n + kl + 1);
            memcpy(n->key, key, kl + 1);
            n->hash = h;
            n->expires_ms = expires_ms;
            n->cutoff_ms = cutoff;
            struct node **b = &s->buckets[h & (s->n_buckets - 1)];
            n->next = *b;
            *b = n;
            if (++s->count > s->n_buckets)
                grow(s);
        }
    }
    pthread_rwlock_unlock(&s->mu);
    return ok;
}

/* Whether key's unexpired entry revokes a token issued at iat_ms; under the
 * read lock. */
static bool revokes(const sb_revset_t *s, const char *key, int64_t iat_ms, int64_t now_ms)
{
    const struct node *n = find(s, key, hash_key(key));
    return n && n->expires_ms > now_ms && iat_ms < n->cutoff_ms;
}

bool sb_revset_revoked(sb_revset_t *s, const char *jti, const char *sub, int64_t iat_ms, int64_t now_ms)
{
    char tk[160], uk[160];
    snprintf(tk, sizeof tk, SB_DENY_TOKEN_PREFIX "%s", jti);
    snprintf(uk, sizeof uk, SB_DENY_USER_PREFIX "%s", sub);
    pthread_rwlock_rdlock(&s->mu);
    bool r = s->count && (revokes(s, tk, iat_ms, now_ms) || revokes(s, uk, iat_ms, now_ms));
    pthread_rwlock_unlock(&s->mu);
    return r;
}

size_t sb_revset_sweep(sb_revset_t *s, int64_t now_ms, size_t max_buckets)
{
    pthread_rwlock_wrlock(&s->mu);
    size_t count = !max_buckets || max_buckets > s->n_buckets ? s->n_buckets : max_buckets;
    size_t removed = sweep_locked(s, now_ms, s->sweep_at, count);
    s->sweep_at = (s->sweep_at + count) & (s->n_buckets - 1);
    pthread_rwlock_unlock(&s->mu);
    return removed;
}
