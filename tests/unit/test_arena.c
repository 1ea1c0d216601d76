#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "sb/arena.h"

static int cleaned[3];
static int order;

static void cleanup(void *p)
{
    *(int *)p = ++order;
}

Test(arena, allocations_are_zeroed_and_aligned)
{
    sb_arena_t *a = sb_arena_new();
    for (int i = 1; i < 2000; i += 37) {
        unsigned char *p = sb_arena_alloc(a, (size_t)i);
        cr_assert_eq((uintptr_t)p % 16, 0);
        for (int j = 0; j < i; j++)
            cr_assert_eq(p[j], 0);
        memset(p, 0xab, (size_t)i);
    }
    sb_arena_free(a);
}

Test(arena, big_blocks_and_strings)
{
    sb_arena_t *a = sb_arena_new();
    char *small = sb_arena_strdup(a, "small");
    char *big = sb_arena_alloc(a, 1 << 20);
    big[(1 << 20) - 1] = 'x';
    char *after = sb_arena_printf(a, "%s-%d", "row", 7);
    cr_assert_str_eq(small, "small");
    cr_assert_str_eq(after, "row-7");
    cr_assert_str_eq(sb_arena_strndup(a, "abcdef", 3), "abc");
    cr_assert_geq(sb_arena_bytes(a), (size_t)(1 << 20));
    sb_arena_free(a);
}

Test(arena, cleanups_run_in_reverse_order)
{
    order = 0;
    sb_arena_t *a = sb_arena_new();
    for (int i = 0; i < 3; i++)
        sb_arena_on_free(a, cleanup, &cleaned[i]);
    sb_arena_free(a);
    cr_assert_eq(cleaned[2], 1);
    cr_assert_eq(cleaned[1], 2);
    cr_assert_eq(cleaned[0], 3);
}

Test(arena, protobuf_allocator_uses_arena)
{
    sb_arena_t *a = sb_arena_new();
    ProtobufCAllocator *al = sb_arena_pb_allocator(a);
    void *p = al->alloc(al->allocator_data, 100);
    cr_assert_not_null(p);
    al->free(al->allocator_data, p); /* no-op: must not crash or double free */
    sb_arena_free(a);
}
