#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>

#include "sb/revset.h"

#define NOW 1700000000000LL

Test(revset, token_entry_revokes_its_token_until_it_expires)
{
    sb_revset_t *s = sb_revset_new(10);
    cr_assert(sb_revset_put(s, "sb:deny:jti-1", "1", NOW + 1000, NOW));
    cr_assert(sb_revset_revoked(s, "jti-1", "user-1", NOW - 5000, NOW));
    cr_assert_not(sb_revset_revoked(s, "jti-2", "user-1", NOW - 5000, NOW));
    /* expired: revokes nothing, and the sweep removes it */
    cr_assert_not(sb_revset_revoked(s, "jti-1", "user-1", NOW - 5000, NOW + 1000));
    cr_assert_eq(sb_revset_size(s), 1);
    cr_assert_eq(sb_revset_sweep(s, NOW + 1000, 0), 1);
    cr_assert_eq(sb_revset_size(s), 0);
    sb_revset_free(s);
}

Test(revset, user_entries_all_and_cutoff_merge_like_the_table)
{
    sb_revset_t *s = sb_revset_new(10);
    cr_assert(sb_revset_put(s, "sb:deny-user:u1", "5000", NOW + 1000, NOW));
    cr_assert(sb_revset_revoked(s, "j", "u1", 4999, NOW));
    cr_assert_not(sb_revset_revoked(s, "j", "u1", 5000, NOW));
    /* an earlier cut-off arriving later does not lower it; a later one raises it */
    cr_assert(sb_revset_put(s, "sb:deny-user:u1", "3000", NOW + 1000, NOW));
    cr_assert(sb_revset_revoked(s, "j", "u1", 4999, NOW));
    cr_assert(sb_revset_put(s, "sb:deny-user:u1", "7000", NOW + 500, NOW));
    cr_assert(sb_revset_revoked(s, "j", "u1", 6999, NOW));
    cr_assert(sb_revset_revoked(s, "j", "u1", 6999, NOW + 900), "the later expiry is kept");
    /* "all" wins over any cut-off, whatever the order */
    cr_assert(sb_revset_put(s, "sb:deny-user:u1", "all", NOW + 1000, NOW));
    cr_assert(sb_revset_put(s, "sb:deny-user:u1", "9000", NOW + 1000, NOW));
    cr_assert(sb_revset_revoked(s, "j", "u1", NOW, NOW));
    /* a value that does not parse counts as every token */
    cr_assert(sb_revset_put(s, "sb:deny-user:u2", "12x", NOW + 1000, NOW));
    cr_assert(sb_revset_revoked(s, "j", "u2", NOW, NOW));
    /* other keys are no revocations */
    cr_assert(sb_revset_put(s, "sb:deny-epoch", "rebuilt", NOW + 1000, NOW));
    cr_assert_eq(sb_revset_size(s), 2);
    sb_revset_free(s);
}

Test(revset, bounded_expired_entries_make_room)
{
    sb_revset_t *s = sb_revset_new(3);
    cr_assert(sb_revset_put(s, "sb:deny:a", "1", NOW + 10, NOW));
    cr_assert(sb_revset_put(s, "sb:deny:b", "1", NOW + 1000, NOW));
    cr_assert(sb_revset_put(s, "sb:deny:c", "1", NOW + 1000, NOW));
    cr_assert_not(sb_revset_put(s, "sb:deny:d", "1", NOW + 1000, NOW),
                  "a fourth entry is over the bound");
    cr_assert_not(sb_revset_revoked(s, "d", "u", 0, NOW));
    cr_assert(sb_revset_put(s, "sb:deny:b", "1", NOW + 2000, NOW), "a merge needs no room");
    /* once a has expired there is room for d */
    cr_assert(sb_revset_put(s, "sb:deny:d", "1", NOW + 1000, NOW + 10));
    cr_assert(sb_revset_revoked(s, "d", "u", 0, NOW + 10));
    cr_assert_eq(sb_revset_size(s), 3);
    sb_revset_clear(s);
    cr_assert_eq(sb_revset_size(s), 0);
    cr_assert_not(sb_revset_revoked(s, "b", "u", 0, NOW));
    sb_revset_free(s);
}

Test(revset, grows_past_its_first_buckets_and_finds_everything)
{
    sb_revset_t *s = sb_revset_new(100000);
    char key[64], jti[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "sb:deny:t%d", i);
        cr_assert(sb_revset_put(s, key, "1", NOW + 1000 + (i % 2) * 1000, NOW));
    }
    for (int i = 0; i < 20000; i += 97) {
        snprintf(jti, sizeof jti, "t%d", i);
        cr_assert(sb_revset_revoked(s, jti, "u", 0, NOW), "%s", jti);
    }
    cr_assert_not(sb_revset_revoked(s, "t20000", "u", 0, NOW));
    /* an incremental sweep visits every bucket in turn */
    size_t removed = 0;
    for (int i = 0; i < 64; i++)
        removed += sb_revset_sweep(s, NOW + 1000, 1024);
    cr_assert_eq(removed, 10000);
    cr_assert_eq(sb_revset_size(s), 10000);
    sb_revset_free(s);
}
