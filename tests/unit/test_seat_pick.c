/* Best-available seat choice (services/reservation/seat_pick.c). A hall is
 * written as rows of text, front row first: '.' a free seat, 'X' a taken
 * one, '_' no seat at that number. The expected choice is written as
 * "row:number" pairs, numbers from 1. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "seat_pick.h"

#define MAX_SEATS 256

typedef struct hall {
    resv_seat_slot_t s[MAX_SEATS];
    size_t n;
} hall_t;

static hall_t hall(const char *const *rows, size_t n_rows)
{
    hall_t h = {.n = 0};
    for (size_t r = 0; r < n_rows; r++)
        for (size_t i = 0; rows[r][i]; i++)
            if (rows[r][i] != '_')
                h.s[h.n++] = (resv_seat_slot_t){(int)r, (int)i + 1, rows[r][i] == '.'};
    return h;
}

/* The choice for `want` as "r:n r:n ...", or "none". */
static const char *pick(const char *const *rows, size_t n_rows, int want)
{
    static char out[512];
    hall_t h = hall(rows, n_rows);
    size_t idx[MAX_SEATS];
    if (!resv_seat_pick(h.s, h.n, want, idx))
        return "none";
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < want; i++)
        len += (size_t)snprintf(out + len, sizeof out - len, "%s%d:%d", i ? " " : "", h.s[idx[i]].row,
                                h.s[idx[i]].number);
    return out;
}

#define ROWS(...)                                                                                       \
    ((const char *const[]){__VA_ARGS__}), (sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *))

Test(seat_pick, empty_hall_front_row_leftmost)
{
    cr_assert_str_eq(pick(ROWS("......", "......"), 2), "0:1 0:2");
    cr_assert_str_eq(pick(ROWS("......", "......"), 1), "0:1");
}

Test(seat_pick, adjacent_in_one_row_before_split_in_front)
{
    /* the front row has 3 free seats but not 3 together: the second row */
    cr_assert_str_eq(pick(ROWS(".X.X.X", "......"), 3), "1:1 1:2 1:3");
}

Test(seat_pick, never_strands_a_single_seat_when_another_choice_exists)
{
    /* taking 1-2 of "X...." would leave... nothing stranded; taking 2-3 of
     * "X.....X" strands nothing either; in "X...X" 2 seats at 2-3 strand 4 */
    cr_assert_str_eq(pick(ROWS("X...X", "......"), 2), "1:1 1:2");
    /* the only run of 3 in row 0 strands one: row 1 offers 3 exactly */
    cr_assert_str_eq(pick(ROWS("X....X", "...XXX"), 3), "1:1 1:2 1:3");
    /* within one row, skip the window that strands the seat next to the aisle */
    cr_assert_str_eq(pick(ROWS("X......"), 2), "0:2 0:3");
    cr_assert_str_eq(pick(ROWS(".X....."), 2), "0:3 0:4");
}

Test(seat_pick, the_end_of_a_row_and_missing_seats_count_as_walls)
{
    /* "...": 2 seats at 1-2 strand seat 3 against the end of the row; 2-3 strand 1 */
    cr_assert_str_eq(pick(ROWS("...", "...."), 2), "1:1 1:2");
    /* a gap in the numbers splits the run */
    cr_assert_str_eq(pick(ROWS(".._..", "......"), 3), "1:1 1:2 1:3");
}

Test(seat_pick, strands_the_fewest_when_every_choice_strands)
{
    cr_assert_str_eq(pick(ROWS("X...X"), 2), "0:2 0:3");
    cr_assert_str_eq(pick(ROWS("X....X", "X....X"), 3), "0:2 0:3 0:4");
}

Test(seat_pick, splits_front_most_when_no_row_has_enough_together)
{
    cr_assert_str_eq(pick(ROWS(".X.X", "X.X."), 3), "0:1 0:3 1:2");
}

Test(seat_pick, not_enough_free_seats)
{
    cr_assert_str_eq(pick(ROWS("X.X", "XX."), 3), "none");
    cr_assert_str_eq(pick(ROWS("XXX"), 1), "none");
    cr_assert_str_eq(pick(ROWS("..."), 0), "none");
    resv_seat_slot_t none[1];
    size_t idx[1];
    cr_assert_not(resv_seat_pick(none, 0, 1, idx));
}

Test(seat_pick, exactly_the_free_seats)
{
    cr_assert_str_eq(pick(ROWS("X..X"), 2), "0:2 0:3");
    cr_assert_str_eq(pick(ROWS("X.XX", "XX.X"), 2), "0:2 1:3");
}
