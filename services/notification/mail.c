/* The notice-mail job: the delivery queue (mail_queue) sent over SMTP.
 *
 * Every notice gets a queue row in the transaction that made it (the inbox
 * transaction of its event), so the consumer never waits on the relay and a
 * relay that is slow or down never blocks, slows or undoes anything but
 * this job. The job is a session job: one replica is the leader, and its
 * ticks run with no transaction open, each statement committing alone.
 *
 * One row, one attempt:
 *   1. the recipient (GetMember: address, name, language) and the text;
 *   2. record the attempt: status SENDING, attempts + 1, committed;
 *   3. send, Message-ID <notice id@MAIL_FROM's domain>, the same on every try;
 *   4. SENT; or PENDING again after MAIL_RETRY_BASE_MS * 2^(attempts-1)
 *      (at most MAIL_RETRY_MAX_MS); or FAILED once MAIL_MAX_ATTEMPTS
 *      attempts failed (admins list them: GET /notifications?mailStatus=FAILED).
 * A relay that does not answer (connection refused, time-out) ends the tick:
 * the rest of the queue would only fail the same way.
 *
 * Killed between 2 and 4, the row stays SENDING; the next leader sends it
 * again with the same Message-ID. SMTP has no idempotent submission, so this
 * is the one window where a second copy can exist: the relay accepted the
 * message (its 250 after DATA) and we died before step 4's commit, a window
 * of one round trip to PostgreSQL. Killed before the relay's 250, the relay
 * discards the unfinished transaction (RFC 5321 4.1.1.4) and the resend is
 * the only copy. The duplicate that can remain carries the same Message-ID,
 * by which mail stores and clients recognise it. docs/internals.md says
 * the same. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notification.h"
#include "sb/config.h"
#include "sb/log.h"
#include "sb/mail.h"

ntf_config_t ntf_config;

sb_status_t ntf_check(sb_buf_t *err)
{
    ntf_config.smtp_url = sb_cfg_str("SMTP_URL", "smtp://127.0.0.1:2525");
    ntf_config.mail_from = sb_cfg_str("MAIL_FROM", "noreply@showbook.local");
    ntf_config.max_attempts = (int)sb_cfg_int("MAIL_MAX_ATTEMPTS", 8, 1, 100);
    ntf_config.retry_base_ms = (int)sb_cfg_int("MAIL_RETRY_BASE_MS", 1000, 10, 3600000);
    ntf_config.retry_max_ms = (int)sb_cfg_int("MAIL_RETRY_MAX_MS", 60000, 10, 86400000);
    ntf_config.timeout_ms = (int)sb_cfg_int("MAIL_TIMEOUT_MS", 10000, 100, 600000);
    if (strncmp(ntf_config.smtp_url, "smtp://", 7) != 0 &&
        strncmp(ntf_config.smtp_url, "smtps://", 8) != 0) {
        sb_buf_addf(err, "SMTP_URL must be an smtp:// or smtps:// URL");
        return SB_INVALID_ARGUMENT;
    }
    const char *at = strchr(ntf_config.mail_from, '@');
    if (!at || at == ntf_config.mail_from || !at[1] || strpbrk(ntf_config.mail_from, " <>\r\n")) {
        sb_buf_addf(err, "MAIL_FROM must be an address like noreply@example.com");
        return SB_INVALID_ARGUMENT;
    }
    ntf_config.domain = at + 1;
    return SB_OK;
}

static const sb_pg_stmt_t stmt_due = {
    "ntf_mail_due",
    "SELECT q.notice_id::text, q.status, q.attempts, n.user_id::text FROM mail_queue q"
    " JOIN notices n USING (notice_id) WHERE q.status IN ('PENDING', 'SENDING') AND q.next_at <= now()"
    " ORDER BY q.next_at, q.notice_id LIMIT 10"};

/* Step 2: $3 ms from now it is due again should this process die. */
static const sb_pg_stmt_t stmt_attempt = {
    "ntf_mail_attempt",
    "UPDATE mail_queue SET status = 'SENDING', attempts = attempts + 1, attempt_at = now(),"
    " recipient = $2, next_at = now() + $3::int * interval '1 millisecond'"
    " WHERE notice_id = $1::uuid AND status IN ('PENDING', 'SENDING') RETURNING attempts"};

static const sb_pg_stmt_t stmt_sent = {
    "ntf_mail_sent", "UPDATE mail_queue SET status = 'SENT', sent_at = now(), last_error = ''"
                     " WHERE notice_id = $1::uuid"};

/* A failed attempt: FAILED when $3 (the attempts made) reached the limit,
 * else due again after $4 ms. $5: count this one (a failure before step 2). */
static const sb_pg_stmt_t stmt_failed = {
    "ntf_mail_failed",
    "UPDATE mail_queue SET attempts = attempts + $5::int, last_error = $2,"
    " status = CASE WHEN $3::int >= $6::int THEN 'FAILED' ELSE 'PENDING' END,"
    " next_at = now() + $4::int * interval '1 millisecond' WHERE notice_id = $1::uuid"};

static int backoff_ms(int attempts)
{
    int64_t d = ntf_config.retry_base_ms;
    for (int i = 1; i < attempts && d < ntf_config.retry_max_ms; i++)
        d *= 2;
    return (int)(d > ntf_config.retry_max_ms ? ntf_config.retry_max_ms : d);
}

static sb_status_t failed(sb_job_ctx_t *job, const char *id, int attempts, bool counted, bool final,
                          const char *why)
{
    char n[16], ms[16], extra[4], max[16];
    snprintf(n, sizeof n, "%d", final ? ntf_config.max_attempts : attempts);
    snprintf(ms, sizeof ms, "%d", backoff_ms(attempts));
    snprintf(extra, sizeof extra, "%d", counted ? 0 : 1);
    snprintf(max, sizeof max, "%d", ntf_config.max_attempts);
    if (final || attempts >= ntf_config.max_attempts)
        sb_warn("mail of notice %s FAILED after %d attempts: %s", id, attempts, why);
    else
        sb_info("mail of notice %s: attempt %d failed (%s); again in %s ms", id, attempts, why, ms);
    return sb_db_exec(job->db, &stmt_failed, NULL, id, why, n, ms, extra, max);
}

/* One row; *stop when the relay did not answer. */
static sb_status_t deliver(sb_job_ctx_t *job, const PGresult *due, int row, bool *stop)
{
    const char *id = PQgetvalue(due, row, 0), *user = PQgetvalue(due, row, 3);
    bool resend = !strcmp(PQgetvalue(due, row, 1), "SENDING");
    int attempts = atoi(PQgetvalue(due, row, 2));
    sb_buf_t err = SB_BUF_INIT;
    ntf_recipient_t to;
    sb_status_t st = ntf_recipient_get(job->arena, user, 3000, &to, &err);
    if (st == SB_NOT_FOUND) { /* withdrawn: nobody to write to */
        st = failed(job, id, attempts, false, true, "the member is not found (withdrawn?)");
        goto out;
    }
    if (st != SB_OK) {
        const char *why =
            sb_arena_printf(job->arena, "member service: %s %s", sb_status_name(st), err.buf);
        st = failed(job, id, attempts + 1, false, false, why);
        goto out;
    }
    PGresult *v;
    if ((st = ntf_view_get(job->db, id, &v)) != SB_OK || PQntuples(v) == 0)
        goto out;
    Sb__Notification__Notification *n = ntf_render(job->arena, v, 0, &to, false);

    char ms[16];
    snprintf(ms, sizeof ms, "%d", ntf_config.timeout_ms + 5000);
    PGresult *r;
    if ((st = sb_db_exec(job->db, &stmt_attempt, &r, id, to.email, ms)) != SB_OK || PQntuples(r) == 0)
        goto out; /* recorded, or sent meanwhile by another leader */
    attempts = atoi(PQgetvalue(r, 0, 0));
    if (resend)
        sb_warn("mail of notice %s: an attempt was cut short (process killed?); sending again with the "
                "same Message-ID",
                id);
    sb_mail_t m = {.url = ntf_config.smtp_url,
                   .from = ntf_config.mail_from,
                   .to = to.email,
                   .subject = n->title,
                   .body = n->body,
                   .message_id = sb_arena_printf(job->arena, "<%s@%s>", id, ntf_config.domain),
                   .timeout_ms = ntf_config.timeout_ms};
    sb_buf_reset(&err);
    sb_status_t sent = sb_mail_send(&m, &err);
    if (sent == SB_OK) {
        st = sb_db_exec(job->db, &stmt_sent, NULL, id);
        sb_info("mail of notice %s sent to %s (attempt %d)", id, to.email, attempts);
    } else {
        st = failed(job, id, attempts, true, false, err.buf);
        *stop = sent == SB_UNAVAILABLE;
    }
out:
    sb_buf_release(&err);
    return st;
}

sb_status_t ntf_mail_tick(sb_job_ctx_t *job)
{
    PGresult *due;
    sb_status_t st = sb_db_exec(job->db, &stmt_due, &due);
    if (st != SB_OK)
        return st;
    bool stop = false;
    int rows = PQntuples(due), i;
    for (i = 0; i < rows && !stop && !atomic_load(job->stopping); i++)
        if ((st = deliver(job, due, i, &stop)) != SB_OK)
            return st;
    job->again = !stop && i == rows && rows == 10;
    return SB_OK;
}
