/* Per-request arena (nginx/h2o pool style): allocations live until
 * sb_arena_free; cleanup callbacks release foreign objects (PGresult,
 * redisReply, ...) in reverse order of registration. */
#ifndef SB_ARENA_H
#define SB_ARENA_H
#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

typedef struct sb_arena sb_arena_t;
typedef void (*sb_cleanup_fn)(void *obj);

sb_arena_t *sb_arena_new(void);                /* caller frees with sb_arena_free */
void sb_arena_free(sb_arena_t *a);             /* runs cleanups, frees all */
void *sb_arena_alloc(sb_arena_t *a, size_t n); /* zeroed, 16-byte aligned; owned by a */
char *sb_arena_strdup(sb_arena_t *a, const char *s);
char *sb_arena_strndup(sb_arena_t *a, const char *s, size_t n);
char *sb_arena_printf(sb_arena_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_arena_on_free(sb_arena_t *a, sb_cleanup_fn fn, void *obj);
/* A protobuf-c allocator whose memory belongs to the arena (free is a no-op). */
ProtobufCAllocator *sb_arena_pb_allocator(sb_arena_t *a);
size_t sb_arena_bytes(const sb_arena_t *a);
/* n zeroed objects of type T, owned by a; aborts (like every allocation) when
 * n * sizeof(T) overflows. SB_ARENA_NEW(a, Sb__Member__Member, 1). */
void *sb_arena_alloc_array(sb_arena_t *a, size_t n, size_t size);
#define SB_ARENA_NEW(a, T, n) ((T *)sb_arena_alloc_array((a), (size_t)(n), sizeof(T)))

#endif
