/* reservation service internals, shared by its files:
 *   main.c              wiring: the service definition, the handler table
 *   inventory_events.c  sb.performance events -> the inventory tables
 *                       (inv_performances, inv_schedules, inv_grades, seats)
 *   inventory.c         the inventory RPCs (GetSeatMap, ListBookable,
 *                       GetPerformanceReservations)
 *   validate.c          text checks, PostgreSQL array literals (UUIDs and
 *                       timestamps are checked with sb/valid.h)
 * Tables: migrations/0001_inventory.sql. */
#ifndef SB_RESERVATION_INTERNAL_H
#define SB_RESERVATION_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>

#include "reservation.pb-c.h"
#include "sb/arena.h"
#include "sb/buf.h"
#include "sb/events.h"
#include "sb/jobs.h"
#include "sb/pg.h"
#include "sb/rpc.h"
#include "sb/status.h"
#include "sb/valid.h"

/* Seats are laid out in rows of this many (see the migration). */
#define RESV_SEATS_PER_ROW 20

/* ---- validate.c ---- */

/* true when s is valid UTF-8 of 1..max_bytes bytes without control characters. */
bool resv_is_text(const char *s, size_t max_bytes);
/* Appends items as a PostgreSQL array literal ({"a","b\"c"}) to out. */
void resv_pg_array(sb_buf_t *out, const char *const *items, size_t n);

/* ---- inventory_events.c ---- */

/* Rows of main.c's event table: performance.approved / .changed /
 * .cancelled. Idempotent, and safe against out-of-order delivery (versions). */
sb_status_t resv_on_performance_approved(sb_event_ctx_t *ev, const void *payload);
sb_status_t resv_on_performance_changed(sb_event_ctx_t *ev, const void *payload);
sb_status_t resv_on_performance_cancelled(sb_event_ctx_t *ev, const void *payload);

/* The seat-fill job (main.c's job table): creates the seats of schedules a
 * snapshot over INVENTORY_INLINE_SEATS left pending, one schedule per tick
 * (one transaction), woken by NOTIFY on RESV_SEAT_FILL_CHANNEL. */
#define RESV_SEAT_FILL_CHANNEL "inv_seat_fill"
sb_status_t resv_seat_fill_tick(sb_job_ctx_t *job);

/* ---- inventory.c ---- */

sb_rpc_handler_t resv_get_seat_map, resv_list_bookable, resv_get_performance_reservations;

#endif
