#include <criterion/criterion.h>
#include <string.h>

#include "sb/util.h"

Test(util, uuid_v4_shape_and_uniqueness)
{
    char a[SB_UUID_LEN + 1], b[SB_UUID_LEN + 1];
    sb_uuid_v4(a);
    sb_uuid_v4(b);
    cr_assert_eq(strlen(a), 36);
    cr_assert_eq(a[8], '-');
    cr_assert_eq(a[14], '4');
    cr_assert(strchr("89ab", a[19]) != NULL);
    cr_assert_str_neq(a, b);
}

Test(util, rfc3339)
{
    char out[32];
    sb_time_rfc3339(0, out);
    cr_assert_str_eq(out, "1970-01-01T00:00:00.000Z");
    sb_time_rfc3339(1795510800123LL, out);
    cr_assert_str_eq(out, "2026-11-24T09:00:00.123Z");
}
