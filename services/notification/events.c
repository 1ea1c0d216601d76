/* The event rows: projections and notices, all in the inbox transaction.
 *
 * Who is told what. A reservation event tells its holder; a payment event
 * its payer; performance.changed the holders of the schedules it names
 * (changed_schedule_ids: time or venue changed), performance.cancelled every
 * holder of the performance. "Holder": a reservation PENDING_PAYMENT or
 * CONFIRMED in the local projection `holdings`, kept from the reservation
 * events' snapshots. We keep a projection rather than ask the reservation
 * service over gRPC because a handler runs inside the inbox transaction
 * (never a network call there) and because the answer must be the one as of
 * this event's place in the stream, not as of whenever a retry runs.
 * Projections apply a snapshot only when its version is not older than what
 * they hold, so a late redelivery never rolls them back.
 *
 * A notice's text is made later (ntf_render) from the notice's own facts and
 * the projections as they are then; a payment notice arriving before its
 * reservation's event still gets the performance once that event is here. */
#include <string.h>

#include "notification.h"
#include "sb/log.h"
#include "sb/valid.h"

static const char *nz(const char *s)
{
    return s && *s ? s : NULL;
}

static char *join_seats(sb_arena_t *a, char *const *seats, size_t n)
{
    sb_buf_t b = SB_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_buf_adds(&b, ", ");
        sb_buf_adds(&b, seats[i]);
    }
    char *s = sb_arena_strdup(a, b.buf);
    sb_buf_release(&b);
    return s;
}

static const char *i64(sb_arena_t *a, int64_t v)
{
    return sb_arena_printf(a, "%lld", (long long)v);
}

/* ------------------------------------------------------------ performances */

static const sb_pg_stmt_t stmt_perf_upsert = {
    "ntf_perf_upsert", "INSERT INTO performances (performance_id, planner_id, title, version)"
                       " VALUES ($1::uuid, $2::uuid, $3, $4::bigint)"
                       " ON CONFLICT (performance_id) DO UPDATE SET planner_id = EXCLUDED.planner_id,"
                       " title = EXCLUDED.title, version = EXCLUDED.version"
                       " WHERE performances.version <= EXCLUDED.version RETURNING 1"};

static const sb_pg_stmt_t stmt_schedule_upsert = {
    "ntf_schedule_upsert",
    "INSERT INTO schedules (schedule_id, performance_id, starts_at, venue)"
    " VALUES ($1::uuid, $2::uuid, $3::timestamptz, $4)"
    " ON CONFLICT (schedule_id) DO UPDATE SET starts_at = EXCLUDED.starts_at, venue = EXCLUDED.venue"};

static const sb_pg_stmt_t stmt_perf_cancel = {
    "ntf_perf_cancel", "INSERT INTO performances (performance_id, planner_id, title, version, cancelled)"
                       " VALUES ($1::uuid, $2::uuid, '', $3::bigint, true)"
                       " ON CONFLICT (performance_id) DO UPDATE SET cancelled = true,"
                       " version = GREATEST(performances.version, EXCLUDED.version)"};

static sb_status_t snapshot(sb_event_ctx_t *ev, const Sb__Events__PerformanceSnapshot *p)
{
    if (!p || !sb_uuid_norm(ev->arena, p->performance_id))
        return sb_event_refuse(ev, "performance.performance_id must be a UUID");
    PGresult *r;
    sb_status_t st = sb_db_exec(ev->db, &stmt_perf_upsert, &r, p->performance_id, nz(p->planner_id),
                                p->title, i64(ev->arena, p->version));
    if (st != SB_OK || PQntuples(r) == 0) /* an older snapshot: nothing to apply */
        return st;
    for (size_t i = 0; i < p->n_schedules; i++) {
        const Sb__Events__ScheduleSnapshot *s = p->schedules[i];
        if (!sb_uuid_norm(ev->arena, s->schedule_id))
            return sb_event_refuse(ev, "schedules[%zu].schedule_id must be a UUID", i);
        const char *venue = *s->venue ? s->venue : p->venue;
        if ((st = sb_db_exec(ev->db, &stmt_schedule_upsert, NULL, s->schedule_id, p->performance_id,
                             nz(s->starts_at), venue)) != SB_OK)
            return st;
    }
    return SB_OK;
}

sb_status_t ntf_on_performance_approved(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__PerformanceApproved *e = payload;
    return snapshot(ev, e->performance);
}

sb_status_t ntf_on_performance_changed(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__PerformanceChanged *e = payload;
    sb_status_t st = snapshot(ev, e->performance);
    if (st != SB_OK || e->n_changed_schedule_ids == 0)
        return st;
    for (size_t i = 0; i < e->n_changed_schedule_ids; i++)
        if (!sb_uuid_norm(ev->arena, e->changed_schedule_ids[i]))
            return sb_event_refuse(ev, "changed_schedule_ids[%zu] must be a UUID", i);
    ntf_facts_t f = {.event_id = ev->env->event_id,
                     .kind = "performance_changed",
                     .performance_id = e->performance->performance_id,
                     .amount = -1,
                     .reason = e->summary};
    char **ids;
    size_t n;
    if ((st = ntf_notice_holders(ev->db, ev->arena, &f, e->changed_schedule_ids,
                                 e->n_changed_schedule_ids, &ids, &n)) == SB_OK)
        sb_info("performance.changed %s: %zu holders notified", f.performance_id, n);
    return st;
}

sb_status_t ntf_on_performance_cancelled(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__PerformanceCancelled *e = payload;
    if (!sb_uuid_norm(ev->arena, e->performance_id))
        return sb_event_refuse(ev, "performance_id must be a UUID");
    sb_status_t st = sb_db_exec(ev->db, &stmt_perf_cancel, NULL, e->performance_id, nz(e->planner_id),
                                i64(ev->arena, e->version));
    if (st != SB_OK)
        return st;
    ntf_facts_t f = {.event_id = ev->env->event_id,
                     .kind = "performance_cancelled",
                     .performance_id = e->performance_id,
                     .amount = -1,
                     .reason = e->reason};
    char **ids;
    size_t n;
    if ((st = ntf_notice_holders(ev->db, ev->arena, &f, NULL, 0, &ids, &n)) == SB_OK)
        sb_info("performance.cancelled %s: %zu holders notified", f.performance_id, n);
    return st;
}

/* ------------------------------------------------------------ reservations */

static const sb_pg_stmt_t stmt_holding_upsert = {
    "ntf_holding_upsert",
    "INSERT INTO holdings (reservation_id, user_id, performance_id, schedule_id, seats, amount,"
    " status, payment_id, version)"
    " VALUES ($1::uuid, $2::uuid, $3::uuid, $4::uuid, $5, $6::bigint, $7, $8::uuid, $9::bigint)"
    " ON CONFLICT (reservation_id) DO UPDATE SET user_id = EXCLUDED.user_id,"
    " performance_id = COALESCE(EXCLUDED.performance_id, holdings.performance_id),"
    " schedule_id = COALESCE(EXCLUDED.schedule_id, holdings.schedule_id),"
    " seats = EXCLUDED.seats, amount = EXCLUDED.amount, status = EXCLUDED.status,"
    " payment_id = COALESCE(EXCLUDED.payment_id, holdings.payment_id), version = EXCLUDED.version"
    " WHERE holdings.version <= EXCLUDED.version"};

/* The holding from the event's snapshot (the full reservation); events
 * without one (older producers) update what their own fields say. */
static sb_status_t holding(sb_event_ctx_t *ev, const Sb__Events__ReservationSnapshot *s, const char *id,
                           const char *user, const char *perf, const char *sched, const char *seats,
                           int64_t amount, const char *status)
{
    if (s && *s->reservation_id) {
        id = s->reservation_id;
        user = s->user_id;
        perf = s->performance_id;
        sched = s->schedule_id;
        seats = join_seats(ev->arena, s->seat_ids, s->n_seat_ids);
        amount = s->amount;
        status = *s->status ? s->status : status;
    }
    if (!sb_uuid_norm(ev->arena, id) || !sb_uuid_norm(ev->arena, user))
        return sb_event_refuse(ev, "reservation_id and user_id must be UUIDs");
    if ((nz(perf) && !sb_uuid_norm(ev->arena, perf)) || (nz(sched) && !sb_uuid_norm(ev->arena, sched)))
        return sb_event_refuse(ev, "performance_id and schedule_id must be UUIDs");
    const char *pay =
        s && nz(s->payment_id) && sb_uuid_norm(ev->arena, s->payment_id) ? s->payment_id : NULL;
    return sb_db_exec(ev->db, &stmt_holding_upsert, NULL, id, user, nz(perf), nz(sched),
                      seats ? seats : "", i64(ev->arena, amount < 0 ? 0 : amount), status, pay,
                      i64(ev->arena, s ? s->version : 0));
}

static sb_status_t notify(sb_event_ctx_t *ev, ntf_facts_t *f)
{
    f->event_id = ev->env->event_id;
    const char *id;
    sb_status_t st = ntf_notice_add(ev->db, ev->arena, f, &id);
    if (st == SB_OK)
        sb_info("%s %s: notice %s for %s", ev->env->type, ev->env->aggregate_id, id ? id : "(had one)",
                f->user_id);
    return st;
}

sb_status_t ntf_on_reservation_created(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__ReservationCreated *e = payload;
    char *seats = join_seats(ev->arena, e->seat_ids, e->n_seat_ids);
    sb_status_t st = holding(ev, e->reservation, e->reservation_id, e->user_id, e->performance_id,
                             e->schedule_id, seats, e->amount, "PENDING_PAYMENT");
    if (st != SB_OK)
        return st;
    ntf_facts_t f = {.user_id = e->user_id,
                     .kind = "reservation_created",
                     .reservation_id = e->reservation_id,
                     .performance_id = e->performance_id,
                     .schedule_id = e->schedule_id,
                     .seats = seats,
                     .amount = e->amount,
                     .deadline = e->expires_at};
    return notify(ev, &f);
}

sb_status_t ntf_on_reservation_confirmed(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__ReservationConfirmed *e = payload;
    sb_status_t st = holding(ev, e->reservation, e->reservation_id, e->user_id, e->performance_id,
                             e->schedule_id, NULL, e->amount, "CONFIRMED");
    if (st != SB_OK)
        return st;
    ntf_facts_t f = {.user_id = e->user_id,
                     .kind = "reservation_confirmed",
                     .reservation_id = e->reservation_id,
                     .payment_id = sb_uuid_norm(ev->arena, e->payment_id) ? e->payment_id : NULL,
                     .performance_id = e->performance_id,
                     .schedule_id = e->schedule_id,
                     .amount = e->amount};
    return notify(ev, &f);
}

sb_status_t ntf_on_reservation_changed(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__ReservationChanged *e = payload;
    char *seats = join_seats(ev->arena, e->seat_ids, e->n_seat_ids);
    const Sb__Events__ReservationSnapshot *s = e->reservation;
    sb_status_t st = holding(ev, s, e->reservation_id, e->user_id, NULL, NULL, seats, e->amount,
                             s && *s->status ? s->status : "PENDING_PAYMENT");
    if (st != SB_OK)
        return st;
    ntf_facts_t f = {.user_id = e->user_id,
                     .kind = "reservation_changed",
                     .reservation_id = e->reservation_id,
                     .seats = seats,
                     .amount = e->amount,
                     .reason = e->reason};
    return notify(ev, &f);
}

sb_status_t ntf_on_reservation_cancelled(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__ReservationCancelled *e = payload;
    sb_status_t st = holding(ev, e->reservation, e->reservation_id, e->user_id, e->performance_id,
                             e->schedule_id, NULL, e->amount, "CANCELLED");
    if (st != SB_OK)
        return st;
    ntf_facts_t f = {.user_id = e->user_id,
                     .kind = "reservation_cancelled",
                     .reservation_id = e->reservation_id,
                     .performance_id = e->performance_id,
                     .schedule_id = e->schedule_id,
                     .amount = e->amount,
                     .reason = e->reason};
    return notify(ev, &f);
}

sb_status_t ntf_on_reservation_expired(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__ReservationExpired *e = payload;
    char *seats = join_seats(ev->arena, e->seat_ids, e->n_seat_ids);
    sb_status_t st = holding(ev, e->reservation, e->reservation_id, e->user_id, e->performance_id,
                             e->schedule_id, seats, -1, "EXPIRED");
    if (st != SB_OK)
        return st;
    ntf_facts_t f = {.user_id = e->user_id,
                     .kind = "reservation_expired",
                     .reservation_id = e->reservation_id,
                     .performance_id = e->performance_id,
                     .schedule_id = e->schedule_id,
                     .seats = seats,
                     .amount = -1};
    return notify(ev, &f);
}

/* ---------------------------------------------------------------- payments */

static const sb_pg_stmt_t stmt_payment_upsert = {
    "ntf_payment_upsert", "INSERT INTO payments (payment_id, user_id, reservation_id, amount, status)"
                          " VALUES ($1::uuid, $2::uuid, $3::uuid, $4::bigint, $5)"
                          " ON CONFLICT (payment_id) DO UPDATE SET status = EXCLUDED.status"};

/* payment.approved / .declined / .refunded / .disputed: the payloads share
 * their first four fields (PaymentApproved has no reason). */
sb_status_t ntf_on_payment(sb_event_ctx_t *ev, const void *payload)
{
    const char *type = ev->env->type;
    const Sb__Events__PaymentDeclined *e = payload; /* the fields every one has */
    const char *reason = strcmp(type, "payment.approved") == 0 ? "" : e->reason;
    if (!sb_uuid_norm(ev->arena, e->payment_id) || !sb_uuid_norm(ev->arena, e->user_id))
        return sb_event_refuse(ev, "payment_id and user_id must be UUIDs");
    const char *resv = sb_uuid_norm(ev->arena, e->reservation_id) ? e->reservation_id : NULL;
    const char *status = strchr(type, '.') + 1;
    sb_status_t st = sb_db_exec(ev->db, &stmt_payment_upsert, NULL, e->payment_id, e->user_id, resv,
                                i64(ev->arena, e->amount), status);
    if (st != SB_OK)
        return st;
    ntf_facts_t f = {.user_id = e->user_id,
                     .kind = sb_arena_printf(ev->arena, "payment_%s", status),
                     .reservation_id = resv,
                     .payment_id = e->payment_id,
                     .amount = e->amount,
                     .reason = reason};
    return notify(ev, &f);
}
