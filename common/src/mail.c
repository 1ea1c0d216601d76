/* SMTP through libcurl (sb/mail.h). A fresh easy handle per message: mail is
 * rare next to HTTP calls, and a handle that kept an SMTP connection open
 * would outlive a relay's restart badly. curl_global_init is thread-safe in
 * the libcurl we require (>= 7.84); http.c calls it too (it is counted). */
#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "sb/mail.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static CURLcode init_rc;

static void global_init(void)
{
    init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool has_crlf(const char *s)
{
    return s && strpbrk(s, "\r\n") != NULL;
}

static bool ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

static void add_base64(sb_buf_t *b, const unsigned char *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        sb_buf_addch(b, tab[(v >> 18) & 63]);
        sb_buf_addch(b, tab[(v >> 12) & 63]);
        sb_buf_addch(b, i + 1 < n ? tab[(v >> 6) & 63] : '=');
        sb_buf_addch(b, i + 2 < n ? tab[v & 63] : '=');
    }
}

/* RFC 2047 encoded-words of at most 45 input bytes each, cut between UTF-8
 * characters, folded onto continuation lines. */
static void add_subject(sb_buf_t *b, const char *s)
{
    if (ascii(s)) {
        sb_buf_adds(b, s);
        return;
    }
    size_t n = strlen(s), at = 0;
    while (at < n) {
        size_t take = n - at > 45 ? 45 : n - at;
        while (at + take < n && ((unsigned char)s[at + take] & 0xC0) == 0x80)
            take--;
        if (at)
            sb_buf_adds(b, "\r\n ");
        sb_buf_adds(b, "=?UTF-8?B?");
        add_base64(b, (const unsigned char *)s + at, take);
        sb_buf_adds(b, "?=");
        at += take;
    }
}

sb_status_t sb_mail_format(const sb_mail_t *m, int64_t now_unix, sb_buf_t *out, sb_buf_t *err)
{
    if (!m->from || !m->to || !m->subject || !m->body || !m->message_id || has_crlf(m->from) ||
        has_crlf(m->to) || has_crlf(m->subject) || has_crlf(m->message_id)) {
        sb_buf_adds(err, "a header is missing or carries CR/LF");
        return SB_INVALID_ARGUMENT;
    }
    char date[64];
    time_t t = (time_t)now_unix;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    sb_buf_addf(out, "Date: %s\r\nFrom: %s\r\nTo: %s\r\nMessage-ID: %s\r\nSubject: ", date, m->from,
                m->to, m->message_id);
    add_subject(out, m->subject);
    sb_buf_adds(out, "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
                     "Content-Transfer-Encoding: 8bit\r\n\r\n");
    for (const char *p = m->body; *p; p++) {
        if (*p == '\n' && (p == m->body || p[-1] != '\r'))
            sb_buf_addch(out, '\r');
        sb_buf_addch(out, *p);
    }
    if (out->len < 2 || memcmp(out->buf + out->len - 2, "\r\n", 2) != 0)
        sb_buf_adds(out, "\r\n");
    return SB_OK;
}

typedef struct reader {
    const char *p;
    size_t left;
} reader_t;

static size_t read_cb(char *dst, size_t size, size_t nmemb, void *arg)
{
    reader_t *r = arg;
    size_t n = size * nmemb < r->left ? size * nmemb : r->left;
    memcpy(dst, r->p, n);
    r->p += n;
    r->left -= n;
    return n;
}

sb_status_t sb_mail_send(const sb_mail_t *m, sb_buf_t *err)
{
    sb_buf_t msg = SB_BUF_INIT;
    sb_status_t st = sb_mail_format(m, (int64_t)time(NULL), &msg, err);
    if (st != SB_OK)
        goto out_free_msg;
    if (!m->url || (strncmp(m->url, "smtp://", 7) != 0 && strncmp(m->url, "smtps://", 8) != 0)) {
        sb_buf_adds(err, "the relay URL must be smtp:// or smtps://");
        st = SB_INVALID_ARGUMENT;
        goto out_free_msg;
    }
    pthread_once(&init_once, global_init);
    CURL *h = init_rc == CURLE_OK ? curl_easy_init() : NULL;
    if (!h) {
        sb_buf_adds(err, "libcurl did not start");
        st = SB_INTERNAL;
        goto out_free_msg;
    }
    struct curl_slist *rcpt = curl_slist_append(NULL, m->to);
    reader_t rd = {msg.buf, msg.len};
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, m->url);
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, m->from);
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(h, CURLOPT_READDATA, &rd);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)msg.len);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(m->timeout_ms > 0 ? m->timeout_ms : 10000));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (rc == CURLE_OK) {
        st = SB_OK;
    } else {
        st = code >= 500 && code < 600 ? SB_FAILED_PRECONDITION : SB_UNAVAILABLE;
        sb_buf_addf(err, "%s (SMTP %ld): %s", curl_easy_strerror(rc), code,
                    *errbuf ? errbuf : "no detail");
    }
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(h);
out_free_msg:
    sb_buf_release(&msg);
    return st;
}
