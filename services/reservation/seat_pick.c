/* Best-available seat choice (see seat_pick.h for the rules). One pass over
 * the seats finds every run of adjacent free seats per row; a window of
 * `want` seats inside a run strands a seat on either side when exactly one
 * free seat is left between it and the run's end (the run is bounded by a
 * taken seat, a gap in the numbers or the end of the row). */
#include "seat_pick.h"

/* The seats [i, j) are one row's adjacent free seats: same row, numbers
 * consecutive. */
static size_t run_end(const resv_seat_slot_t *s, size_t n, size_t i)
{
    size_t j = i + 1;
    while (j < n && s[j].free && s[j].row == s[i].row && s[j].number == s[j - 1].number + 1)
        j++;
    return j;
}

/* Single free seats a window [a, a + want) of the run [i, j) leaves. */
static int strands(size_t i, size_t j, size_t a, size_t want)
{
    return (a - i == 1) + (j - (a + want) == 1);
}

bool resv_seat_pick(const resv_seat_slot_t *seats, size_t n, int want, size_t *out)
{
    if (want < 1)
        return false;
    size_t w = (size_t)want, free_count = 0;
    for (size_t i = 0; i < n; i++)
        free_count += seats[i].free;
    if (free_count < w)
        return false;

    /* best adjacent window: fewest strands, then the front row, then leftmost
     * (the scan order gives the last two) */
    size_t best = n;
    int best_strands = 3;
    for (size_t i = 0; i < n;) {
        if (!seats[i].free) {
            i++;
            continue;
        }
        size_t j = run_end(seats, n, i);
        for (size_t a = i; a + w <= j; a++) {
            int k = strands(i, j, a, w);
            if (k < best_strands || (k == best_strands && seats[a].row < seats[best].row)) {
                best = a;
                best_strands = k;
            }
        }
        i = j;
    }
    if (best < n) {
        for (size_t k = 0; k < w; k++)
            out[k] = best + k;
        return true;
    }
    /* no row has want adjacent free seats: the front-most free seats */
    size_t k = 0;
    for (size_t i = 0; i < n && k < w; i++)
        if (seats[i].free)
            out[k++] = i;
    return true;
}
