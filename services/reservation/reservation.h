/* reservation service internals, shared by its files:
 *   main.c              wiring: the service definition, the handler table
 *   inventory_events.c  sb.performance events -> the inventory tables
 *                       (inv_performances, inv_schedules, inv_grades, seats)
 *   inventory.c         the inventory RPCs (GetSeatMap, ListBookable,
 *                       GetPerformanceReservations)
 *   validate.c          text checks, PostgreSQL array literals (UUIDs and
 *                       timestamps are checked with sb/valid.h)
 *   holds.c             CreateReservation (chosen seats, best available),
 *                       taking seats, the hold-expiry job
 *   booking.c           GetReservation, UpdateReservation,
 *                       CancelReservation, the lists, the log, the events
 *   seat_pick.c         best-available choice (pure logic, seat_pick.h)
 *   saga.c              the booking saga's events (payment.approved,
 *                       payment.refunded, member.withdrawn, and the
 *                       reservations of a cancelled performance), the
 *                       mass-cancel job
 *   payments.c          calls to the payment service (the refund before a
 *                       paid reservation is cancelled, GetReservationPayment)
 * Tables: migrations/0001_inventory.sql, 0003_booking.sql, 0004_saga.sql. */
#ifndef SB_RESERVATION_INTERNAL_H
#define SB_RESERVATION_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>

#include "reservation.pb-c.h"
#include "sb/arena.h"
#include "sb/buf.h"
#include "sb/db.h"
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

/* ---- booking (holds.c, booking.c) ---- */

/* The limits, from the environment at start-up (resv_booking_check). */
typedef struct resv_config {
    int hold_ttl_s;     /* HOLD_TTL_S: how long a hold lasts */
    int max_seats;      /* RESV_MAX_SEATS: seats in one reservation */
    int max_user_seats; /* RESV_MAX_USER_SEATS: seats one user holds or bought in a schedule */
    int max_pending;    /* RESV_MAX_PENDING: PENDING_PAYMENT reservations per user and schedule */
    int expiry_batch;   /* HOLD_EXPIRY_BATCH: reservations one expiry tick ends */
    int cancel_batch;   /* RESV_CANCEL_BATCH: reservations one mass-cancel step ends */
} resv_config_t;
extern resv_config_t resv_config;
/* The service's check hook: reads resv_config. */
sb_status_t resv_booking_check(sb_buf_t *err);

sb_rpc_handler_t resv_create, resv_get, resv_update, resv_cancel, resv_list, resv_list_member,
    resv_replay_cancellations;
/* The hold-expiry job (main.c's job table). */
sb_status_t resv_expire_holds(sb_job_ctx_t *job);

/* A reservation's columns, named as the fields of Reservation (the seat ids
 * joined by RESV_SEP as seat_list), over a row of reservations (unqualified
 * names: usable in RETURNING). status is the status readers see (a
 * PENDING_PAYMENT past its deadline reads EXPIRED); stored_status the row's. */
#define RESV_SEP "\\x1f" /* SQL: E'\\x1f', the unit separator (never in a seat id) */
#define RESV_COLS                                                                                       \
    "reservation_id::text AS reservation_id, user_id::text AS user_id,"                                 \
    " performance_id::text AS performance_id, schedule_id::text AS schedule_id,"                        \
    " array_to_string(seat_ids, E'" RESV_SEP "') AS seat_list, amount,"                                 \
    " resv_status(status, expires_at) AS status, status AS stored_status,"                              \
    " " SB_DB_TS("expires_at") " AS expires_at, attendee_name, attendee_phone, payment_id,"             \
                               " " SB_DB_TS("created_at") " AS created_at, " SB_DB_TS(                  \
                                   "updated_at") " AS updated_at, version,"                             \
                                                 " (extract(epoch FROM created_at) * 1000000)::bigint " \
                                                 "AS cursor_us, expires_at::text AS hold_until"

/* Row `row` of a result with RESV_COLS as a Reservation in a. */
Sb__Reservation__Reservation *resv_from_row(sb_arena_t *a, const PGresult *r, int row);
/* Writes the reservation.* event `type` for res to the outbox on db's
 * transaction: the flat fields by name, the full snapshot, reason and actor
 * where the payload has them. */
sb_status_t resv_emit(sb_db_t *db, sb_arena_t *a, const char *type,
                      const Sb__Reservation__Reservation *res, const char *reason, const char *actor);
/* Ends reservation `id`, which the caller has locked, if its stored status
 * is `from` (PENDING_PAYMENT, CONFIRMED): state `to` (CANCELLED, EXPIRED),
 * its seats (held or sold) free, a log row by `who` for `why`, and the
 * event (reservation.cancelled, was_paid when it had a payment, or
 * reservation.expired) on db's transaction. *res: the result in a, or NULL
 * when the reservation was not in `from` (nothing changed). */
sb_status_t resv_end(sb_db_t *db, sb_arena_t *a, const char *id, const char *from, const char *to,
                     const char *who, const char *why, Sb__Reservation__Reservation **res);
/* The reservation `id` (a UUID, else INVALID_ARGUMENT) if the caller may see
 * it, as GetReservation decides (NOT_FOUND otherwise); *res in ctx->arena. */
sb_status_t resv_load_visible(sb_rpc_ctx_t *ctx, const char *id, Sb__Reservation__Reservation **res);
/* A reservation's name for its status ("PENDING_PAYMENT"). */
const char *resv_status_name(int status);

/* One page of reservations, newest first, those matching every filter set
 * (NULL or "": any): ids are checked as UUIDs, times as RFC 3339, status is
 * the status readers see. out, n: the page (ctx->arena); next: its token
 * when more follow. */
typedef struct resv_filter {
    const char *user, *performance, *schedule, *status, *from, *to;
} resv_filter_t;
sb_status_t resv_list_page(sb_rpc_ctx_t *ctx, const resv_filter_t *f, int page_size, const char *token,
                           Sb__Reservation__Reservation ***out, size_t *n, char **next);

/* Takes the seats `ids` (a PostgreSQL text[] literal of n ids) of schedule
 * for reservation, held until `until` (an SQL timestamptz text) or for
 * HOLD_TTL_S when NULL: one guarded UPDATE, all or nothing. A seat held
 * (unexpired) or sold is ALREADY_EXISTS naming the seats, an id the schedule
 * does not have INVALID_ARGUMENT, both refusals (the caller rolls back). */
sb_status_t resv_take_seats(sb_rpc_ctx_t *ctx, const char *schedule, const char *reservation,
                            const char *ids, const char *const *id_list, size_t n, const char *until);
/* Checks seatIds: 1..max_seats UUID-free texts without duplicates. */
sb_status_t resv_check_seat_ids(sb_rpc_ctx_t *ctx, char *const *ids, size_t n);
/* Locks the user's holds of the schedule (SB_LOCK_RESV_USER_SCHEDULE) and
 * refuses what would break the per-user limits with `adding` more seats and
 * (new_pending) one more PENDING_PAYMENT reservation; `except` (a
 * reservation id or NULL) is left out of the counts. */
sb_status_t resv_check_user_limits(sb_rpc_ctx_t *ctx, const char *user, const char *schedule,
                                   const char *except, size_t adding, bool new_pending);

/* ---- saga.c ---- */

/* Rows of main.c's event table (see saga.c). */
sb_status_t resv_on_payment_approved(sb_event_ctx_t *ev, const void *payload);
sb_status_t resv_on_payment_refunded(sb_event_ctx_t *ev, const void *payload);
sb_status_t resv_on_member_withdrawn(sb_event_ctx_t *ev, const void *payload);
/* The live (PENDING_PAYMENT in time, CONFIRMED) reservations of performance
 * `perf` cancelled for `why` on ev's transaction: a first batch at once,
 * the rest by the mass-cancel job (performance.cancelled, inventory_events.c). */
sb_status_t resv_cancel_performance(sb_event_ctx_t *ev, const char *perf, const char *why);
/* The mass-cancel job (main.c's job table): one batch of one pending mass
 * cancel per tick, woken by NOTIFY on RESV_MASS_CANCEL_CHANNEL. */
#define RESV_MASS_CANCEL_CHANNEL "resv_mass_cancel"
sb_status_t resv_mass_cancel_tick(sb_job_ctx_t *job);

/* ---- payments.c ---- */

/* Asks the payment service to refund the approved payment `payment` of
 * reservation `id` (RefundReservation), with no transaction open: OK once it
 * answers the payment REFUNDED; otherwise a refusal for the client (the
 * payment service's own refusal, or UNAVAILABLE when it cannot be had). */
sb_status_t resv_payment_refund(sb_rpc_ctx_t *ctx, const char *id, const char *payment,
                                const char *reason);
/* GetReservationPayment. */
sb_rpc_handler_t resv_get_payment;

#endif
