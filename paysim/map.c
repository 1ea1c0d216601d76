/* A string-keyed hash table (chained, FNV-1a, doubling at load 1): the
 * ledger's indexes. Not thread-safe; the ledger's lock covers it. */
#include <stdlib.h>
#include <string.h>

#include "paysim.h"
#include "sb/alloc.h"

typedef struct entry {
    char *key;
    void *val;
    struct entry *next;
} entry_t;

struct ps_map {
    entry_t **slots;
    size_t n_slots; /* a power of two */
    size_t n;
};

static size_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

ps_map_t *ps_map_new(void)
{
    ps_map_t *m = sb_calloc(1, sizeof *m);
    m->n_slots = 64;
    m->slots = sb_calloc(m->n_slots, sizeof *m->slots);
    return m;
}

void ps_map_free(ps_map_t *m, void (*free_val)(void *))
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_slots; i++)
        for (entry_t *e = m->slots[i], *next; e; e = next) {
            next = e->next;
            if (free_val)
                free_val(e->val);
            free(e->key);
            free(e);
        }
    free(m->slots);
    free(m);
}

static entry_t **find(const ps_map_t *m, const char *key)
{
    entry_t **p = &m->slots[hash(key) & (m->n_slots - 1)];
    while (*p && strcmp((*p)->key, key) != 0)
        p = &(*p)->next;
    return p;
}

void *ps_map_get(const ps_map_t *m, const char *key)
{
    entry_t *e = *find(m, key);
    return e ? e->val : NULL;
}

static void grow(ps_map_t *m)
{
    size_t n = m->n_slots * 2;
    entry_t **slots = sb_calloc(n, sizeof *slots);
    for (size_t i = 0; i < m->n_slots; i++)
        for (entry_t *e = m->slots[i], *next; e; e = next) {
            next = e->next;
            size_t at = hash(e->key) & (n - 1);
            e->next = slots[at];
            slots[at] = e;
        }
    free(m->slots);
    m->slots = slots;
    m->n_slots = n;
}

void ps_map_put(ps_map_t *m, const char *key, void *val)
{
    entry_t **p = find(m, key);
    if (*p) {
        (*p)->val = val;
        return;
    }
    entry_t *e = sb_calloc(1, sizeof *e);
    e->key = sb_strdup(key);
    e->val = val;
    *p = e;
    if (++m->n > m->n_slots)
        grow(m);
}

void *ps_map_del(ps_map_t *m, const char *key)
{
    entry_t **p = find(m, key);
    entry_t *e = *p;
    if (!e)
        return NULL;
    void *val = e->val;
    *p = e->next;
    free(e->key);
    free(e);
    m->n--;
    return val;
}

size_t ps_map_size(const ps_map_t *m)
{
    return m->n;
}
