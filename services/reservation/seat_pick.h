/* Best-available seat choice: pure logic, no database (unit-tested in
 * tests/unit/test_seat_pick.c).
 *
 * Given every seat of one grade of a schedule (free or not) and a quantity,
 * choose the seats a box office would:
 *   1. adjacent seats in one row that leave no single free seat stranded
 *      (a free seat whose both neighbours are taken, where the end of a row
 *      or a missing seat counts as taken), in the row nearest the front,
 *      leftmost;
 *   2. otherwise adjacent seats in one row, nearest the front, stranding as
 *      few seats as possible;
 *   3. otherwise (no row has that many adjacent free seats) the free seats
 *      nearest the front, in row and number order;
 *   4. none when fewer seats are free than asked for. */
#ifndef SB_RESERVATION_SEAT_PICK_H
#define SB_RESERVATION_SEAT_PICK_H
#include <stdbool.h>
#include <stddef.h>

typedef struct resv_seat_slot {
    int row;    /* 0 = the front row */
    int number; /* 1.. within the row */
    bool free;
} resv_seat_slot_t;

/* seats: n of them, sorted by (row, number), no duplicates. Writes `want`
 * indices into seats to out (ascending) and returns true; false when fewer
 * than want seats are free or want < 1 (out untouched). */
bool resv_seat_pick(const resv_seat_slot_t *seats, size_t n, int want, size_t *out);

#endif
