/* notification service internals, shared by its files:
 *   main.c     wiring: the method, event and job tables
 *   events.c   the event rows: the projections (performances, schedules,
 *              holdings, payments) and one notice per affected user per
 *              event, with its mail_queue row
 *   notices.c  the notices table: inserts, the view a text is made from,
 *              rendering (templates/<lang>/<kind>.txt), the recipient
 *              (GetMember), ListNotifications, MarkNotificationRead and
 *              the explicit notices (Send*Notice)
 *   mail.c     the notice-mail job: the delivery queue sent over SMTP
 * Tables: migrations/0001_notices.sql. */
#ifndef SB_NOTIFICATION_INTERNAL_H
#define SB_NOTIFICATION_INTERNAL_H
#include <stdbool.h>
#include <stdint.h>

#include "events.pb-c.h"
#include "member.pb-c.h"
#include "notification.pb-c.h"
#include "sb/arena.h"
#include "sb/buf.h"
#include "sb/db.h"
#include "sb/events.h"
#include "sb/jobs.h"
#include "sb/rpc.h"
#include "sb/status.h"

/* ---- mail.c: the configuration (from the environment at start-up) ---- */
typedef struct ntf_config {
    const char *smtp_url;  /* SMTP_URL, smtp://127.0.0.1:2525 */
    const char *mail_from; /* MAIL_FROM, noreply@showbook.local */
    const char *domain;    /* Message-IDs' right part: MAIL_FROM's domain */
    int max_attempts;      /* MAIL_MAX_ATTEMPTS (8): then FAILED */
    int retry_base_ms;     /* MAIL_RETRY_BASE_MS (1000): the first backoff, doubling */
    int retry_max_ms;      /* MAIL_RETRY_MAX_MS (60000): the longest backoff */
    int timeout_ms;        /* MAIL_TIMEOUT_MS (10000): one SMTP exchange */
} ntf_config_t;
extern ntf_config_t ntf_config;
sb_status_t ntf_check(sb_buf_t *err);

#define NTF_MAIL_CHANNEL "notice_mail"
sb_status_t ntf_mail_tick(sb_job_ctx_t *job);

/* ---- notices.c ---- */

/* The facts of a new notice; NULL or "" fields are absent. */
typedef struct ntf_facts {
    const char *event_id; /* NULL: an explicit notice */
    const char *user_id;
    const char *kind; /* "reservation_created": a template's name */
    const char *reservation_id, *payment_id, *performance_id, *schedule_id;
    const char *seats;
    int64_t amount; /* < 0: absent */
    const char *reason, *deadline, *headline, *message;
} ntf_facts_t;

/* One notice (and its mail_queue row) on db's transaction, waking the mail
 * job at commit. A second notice of one (event, user) is not made: *id is
 * then NULL. id may be NULL. */
sb_status_t ntf_notice_add(sb_db_t *db, sb_arena_t *a, const ntf_facts_t *f, const char **id);
/* A notice to every holder (a PENDING_PAYMENT or CONFIRMED reservation in
 * the holdings) of performance f->performance_id, one per user (their seats
 * together), only of the schedules in schedule_ids when n_schedules > 0.
 * The new notices' ids into *ids (arena a), their number into *n. */
sb_status_t ntf_notice_holders(sb_db_t *db, sb_arena_t *a, const ntf_facts_t *f,
                               char *const *schedule_ids, size_t n_schedules, char ***ids, size_t *n);

/* The recipient of a notice as the member service says now. */
typedef struct ntf_recipient {
    const char *email;
    const char *name;
    const char *language; /* "ko" or "en" */
} ntf_recipient_t;
/* GetMember(user_id) as this service (mTLS), within timeout_ms: OK, or
 * NOT_FOUND (no such active member), or the call's failure (err). */
sb_status_t ntf_recipient_get(sb_arena_t *a, const char *user_id, int64_t timeout_ms,
                              ntf_recipient_t *out, sb_buf_t *err);

/* The view of notice `id` (NTF_VIEW row 0 of r): the Notification message
 * with title and body rendered in r->language, addressed to r->name. */
Sb__Notification__Notification *ntf_render(sb_arena_t *a, const PGresult *view, int row,
                                           const ntf_recipient_t *r, bool admin);
/* The view row of notice id into *out (NULL when there is none). */
sb_status_t ntf_view_get(sb_db_t *db, const char *id, PGresult **out);

sb_rpc_handler_t ntf_list, ntf_mark_read, ntf_send_reservation, ntf_send_payment, ntf_send_cancellation;

/* ---- events.c ---- */
sb_status_t ntf_on_performance_approved(sb_event_ctx_t *ev, const void *payload);
sb_status_t ntf_on_performance_changed(sb_event_ctx_t *ev, const void *payload);
sb_status_t ntf_on_performance_cancelled(sb_event_ctx_t *ev, const void *payload);
sb_status_t ntf_on_reservation_created(sb_event_ctx_t *ev, const void *payload);
sb_status_t ntf_on_reservation_confirmed(sb_event_ctx_t *ev, const void *payload);
sb_status_t ntf_on_reservation_changed(sb_event_ctx_t *ev, const void *payload);
sb_status_t ntf_on_reservation_cancelled(sb_event_ctx_t *ev, const void *payload);
sb_status_t ntf_on_reservation_expired(sb_event_ctx_t *ev, const void *payload);
sb_status_t ntf_on_payment(sb_event_ctx_t *ev, const void *payload);

#endif
