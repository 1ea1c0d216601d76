#include <criterion/criterion.h>
#include <stdlib.h>

#include "sb/config.h"

Test(config, strings_default_when_unset_or_empty)
{
    unsetenv("SB_T_STR");
    cr_assert_str_eq(sb_cfg_str("SB_T_STR", "d"), "d");
    setenv("SB_T_STR", "", 1);
    cr_assert_str_eq(sb_cfg_str("SB_T_STR", "d"), "d");
    setenv("SB_T_STR", "v", 1);
    cr_assert_str_eq(sb_cfg_str("SB_T_STR", "d"), "v");
}

Test(config, integers_are_validated)
{
    setenv("SB_T_INT", "42", 1);
    cr_assert_eq(sb_cfg_int("SB_T_INT", 7, 0, 100), 42);
    setenv("SB_T_INT", "420", 1);
    cr_assert_eq(sb_cfg_int("SB_T_INT", 7, 0, 100), 7);
    setenv("SB_T_INT", "4x", 1);
    cr_assert_eq(sb_cfg_int("SB_T_INT", 7, 0, 100), 7);
    setenv("SB_T_INT", "-1", 1);
    cr_assert_eq(sb_cfg_int("SB_T_INT", 7, 0, 100), 7);
}

Test(config, booleans)
{
    setenv("SB_T_B", "yes", 1);
    cr_assert(sb_cfg_bool("SB_T_B", false));
    setenv("SB_T_B", "0", 1);
    cr_assert_not(sb_cfg_bool("SB_T_B", true));
    setenv("SB_T_B", "maybe", 1);
    cr_assert(sb_cfg_bool("SB_T_B", true));
}
