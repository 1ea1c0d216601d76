/* Outbound e-mail over SMTP (libcurl), for a service's delivery job (the
 * notification service's mail queue). One function, a request struct, no
 * retries here: the caller keeps the queue and decides when to try again.
 *
 *     sb_mail_t m = {.url = "smtp://127.0.0.1:2525", .from = "noreply@showbook.local",
 *                    .to = "kim@example.com", .subject = "예약 확정", .body = text,
 *                    .message_id = "<5f0c...@showbook.local>", .timeout_ms = 10000};
 *     sb_status_t st = sb_mail_send(&m, &err);
 *
 * The message is UTF-8 text/plain (8bit), its Subject RFC 2047 encoded when
 * it is not ASCII. OK means the server accepted it (250 after DATA); any
 * other status means it did not say so: UNAVAILABLE (no connection, time-out,
 * a 4xx), FAILED_PRECONDITION (a 5xx: the server refused the sender, the
 * recipient or the message), INVALID_ARGUMENT (a header value with CR or LF).
 * err says what happened. Never hold a database transaction across it. */
#ifndef SB_MAIL_H
#define SB_MAIL_H
#include <stdint.h>

#include "sb/buf.h"
#include "sb/status.h"

typedef struct sb_mail {
    const char *url;        /* smtp://host:port (smtps:// for TLS) */
    const char *from;       /* envelope sender and From: */
    const char *to;         /* one recipient: envelope and To: */
    const char *subject;    /* UTF-8 */
    const char *body;       /* UTF-8 text, lines ending in \n */
    const char *message_id; /* "<id@domain>": the same on every resend of one message */
    int64_t timeout_ms;     /* the whole exchange (0: 10000) */
} sb_mail_t;

sb_status_t sb_mail_send(const sb_mail_t *m, sb_buf_t *err);

/* The message sb_mail_send sends (headers and body, CRLF line ends), into
 * out: for tests and logs. INVALID_ARGUMENT with err when a header would
 * carry CR or LF. */
sb_status_t sb_mail_format(const sb_mail_t *m, int64_t now_unix, sb_buf_t *out, sb_buf_t *err);

#endif
