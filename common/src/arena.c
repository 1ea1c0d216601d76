#include "sb/arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/alloc.h"

#define CHUNK_SIZE 8192
#define ALIGN 16

struct chunk {
    struct chunk *next;
    size_t used, size;
    _Alignas(ALIGN) unsigned char data[];
};

struct cleanup {
    struct cleanup *next;
    sb_cleanup_fn fn;
    void *obj;
};

struct sb_arena {
    struct chunk *chunks;
    struct cleanup *cleanups;
    size_t bytes;
    ProtobufCAllocator pb;
};

static void *pb_alloc(void *data, size_t n)
{
    return sb_arena_alloc(data, n);
}

static void pb_free(void *data, void *p)
{
    (void)data;
    (void)p; /* released with the arena */
}

sb_arena_t *sb_arena_new(void)
{
    sb_arena_t *a = sb_calloc(1, sizeof *a);
    a->pb.alloc = pb_alloc;
    a->pb.free = pb_free;
    a->pb.allocator_data = a;
    return a;
}

void sb_arena_free(sb_arena_t *a)
{
    if (!a)
        return;
    for (struct cleanup *c = a->cleanups; c;) {
        struct cleanup *next = c->next;
        c->fn(c->obj);
        c = next;
    }
    for (struct chunk *c = a->chunks; c;) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

void *sb_arena_alloc(sb_arena_t *a, size_t n)
{
    size_t need = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (need == 0)
        need = ALIGN;
    struct chunk *c = a->chunks;
    if (!c || c->size - c->used < need) {
        size_t size = need > CHUNK_SIZE / 2 ? need : CHUNK_SIZE;
        struct chunk *nc = sb_malloc(sizeof *nc + size);
        nc->used = 0;
        nc->size = size;
        if (size == need && c) {
            /* big block: keep the current chunk at the head for small allocations */
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            a->chunks = nc;
        }
        c = nc;
        a->bytes += size;
    }
    void *p = c->data + c->used;
    c->used += need;
    memset(p, 0, n);
    return p;
}

void *sb_arena_alloc_array(sb_arena_t *a, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        sb_oom(SIZE_MAX); /* a count no input can reach: capped before it is read */
    return sb_arena_alloc(a, total);
}

char *sb_arena_strndup(sb_arena_t *a, const char *s, size_t n)
{
    char *p = sb_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *sb_arena_strdup(sb_arena_t *a, const char *s)
{
    return sb_arena_strndup(a, s, strlen(s));
}

char *sb_arena_printf(sb_arena_t *a, const char *fmt, ...)
{
    va_list ap, cp;
    va_start(ap, fmt);
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0)
        n = 0;
    char *p = sb_arena_alloc(a, (size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void sb_arena_on_free(sb_arena_t *a, sb_cleanup_fn fn, void *obj)
{
    struct cleanup *c = sb_arena_alloc(a, sizeof *c);
    c->fn = fn;
    c->obj = obj;
    c->next = a->cleanups;
    a->cleanups = c;
}

ProtobufCAllocator *sb_arena_pb_allocator(sb_arena_t *a)
{
    return &a->pb;
}

size_t sb_arena_bytes(const sb_arena_t *a)
{
    return a->bytes;
}
