/* Query rows into messages by column name (sb_db_row_to_pb and
 * sb_db_rows_to_pb in common/src/db.c). The results are built with libpq's
 * own PQmakeEmptyPGresult/PQsetvalue: no database needed. */
#include <criterion/criterion.h>
#include <string.h>

#include "kitchen.pb-c.h"
#include "sb/db.h"

static sb_arena_t *a;
static PGresult *r;

/* columns: what a query would name them */
static const char *const cols[] = {"title",  "running_minutes", "grade",    "active",   "not_a_field",
                                   "amount", "limit",           "seat_ids", "quantity", "main_seat"};
#define NCOLS (int)(sizeof cols / sizeof cols[0])

static void put(int row, const char *const *values)
{
    for (int c = 0; c < NCOLS; c++)
        cr_assert(PQsetvalue(r, row, c, (char *)values[c], values[c] ? (int)strlen(values[c]) : -1));
}

static void setup(void)
{
    a = sb_arena_new();
    r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc desc[NCOLS];
    memset(desc, 0, sizeof desc);
    for (int c = 0; c < NCOLS; c++) {
        desc[c].name = (char *)cols[c];
        desc[c].typid = 25; /* text */
        desc[c].typlen = -1;
        desc[c].atttypmod = -1;
    }
    cr_assert(PQsetResultAttrs(r, NCOLS, desc));
    /* NULL: SQL NULL */
    put(0, (const char *[]){"Hamlet", "150", "VIP", "t", "ignored", NULL, "7", "{a,b}", "3", "x"});
    put(1, (const char *[]){"", "-1", "UNKNOWN_GRADE", "f", NULL, "9000000000", NULL, NULL, NULL, NULL});
}

static void teardown(void)
{
    PQclear(r);
    sb_arena_free(a);
}

TestSuite(db_row, .init = setup, .fini = teardown);

Test(db_row, columns_fill_the_fields_of_their_name)
{
    Sb__Test__Kitchen k = SB__TEST__KITCHEN__INIT;
    k.amount = 42;
    sb_db_row_to_pb(r, 0, &k.base);
    cr_assert_str_eq(k.title, "Hamlet");
    cr_assert_eq(k.title, PQgetvalue(r, 0, 0)); /* borrowed from the result */
    cr_assert_eq(k.running_minutes, 150);
    cr_assert_eq(k.grade, SB__TEST__GRADE__VIP);
    cr_assert(k.active);
    cr_assert_eq(k.amount, 42); /* SQL NULL: left as it was */
    cr_assert_eq(k.limit, 7);   /* a keyword as a column name is just a name */
    cr_assert_eq(k.target_case, SB__TEST__KITCHEN__TARGET_QUANTITY);
    cr_assert_eq(k.quantity, 3);
    /* neither repeated nor message fields are read from text */
    cr_assert_eq(k.n_seat_ids, 0);
    cr_assert_null(k.main_seat);
}

Test(db_row, unknown_enum_names_and_nulls_keep_the_defaults)
{
    Sb__Test__Kitchen k = SB__TEST__KITCHEN__INIT;
    sb_db_row_to_pb(r, 1, &k.base);
    cr_assert_str_eq(k.title, "");
    cr_assert_eq(k.running_minutes, -1);
    cr_assert_eq(k.grade, SB__TEST__GRADE__GRADE_UNSPECIFIED);
    cr_assert_not(k.active);
    cr_assert_eq(k.amount, 9000000000LL);
    cr_assert_eq(k.limit, 0);
    cr_assert_eq(k.target_case, SB__TEST__KITCHEN__TARGET__NOT_SET);
}

Test(db_row, rows_become_an_array_of_messages)
{
    Sb__Test__Kitchen **k = sb_db_rows_to_pb(a, r, 0, 2, &sb__test__kitchen__descriptor);
    cr_assert_eq(k[0]->base.descriptor, &sb__test__kitchen__descriptor);
    cr_assert_str_eq(k[0]->title, "Hamlet");
    cr_assert_eq(k[1]->running_minutes, -1);
    cr_assert_eq(k[1]->amount, 9000000000LL);

    Sb__Test__Kitchen **tail = sb_db_rows_to_pb(a, r, 1, 2, &sb__test__kitchen__descriptor);
    cr_assert_eq(tail[0]->running_minutes, -1);
    cr_assert_not_null(sb_db_rows_to_pb(a, r, 2, 2, &sb__test__kitchen__descriptor)); /* none: empty */
}
