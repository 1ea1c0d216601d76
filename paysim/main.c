/* sb-paysim: the card provider the payment service talks to, simulated
 * (docs/payments.md section 1 is the contract; paysim.h the module map).
 *
 * libmicrohttpd with a thread per connection, as the gateway: a request in
 * delay or timeout mode blocks only its own connection. Timeout mode holds
 * the connection without an answer until the client closes it (polled on the
 * socket: POLLRDHUP, or a read of 0 bytes), PAYSIM_HOLD_MAX_MS passes, or the
 * process stops; then it closes without a byte, which is what a client that
 * gave up would have seen anyway.
 *
 * Every log line of a request carries its trace id (X-Trace-Id when valid,
 * else a fresh one), and the answer echoes it. Request bodies are never
 * logged: they hold card numbers. */
#define _GNU_SOURCE /* POLLRDHUP */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "paysim.h"
#include "sb/alloc.h"
#include "sb/config.h"
#include "sb/http.h"
#include "sb/log.h"
#include "sb/util.h"

#define MAX_BODY (64u * 1024)

static atomic_bool stopping;
static int64_t hold_max_ms;

bool ps_stopping(void)
{
    return atomic_load(&stopping);
}

void ps_wait_ms(int64_t ms)
{
    int64_t end = sb_mono_ns() / 1000000 + ms;
    for (int64_t now; !ps_stopping() && (now = sb_mono_ns() / 1000000) < end;)
        sb_sleep_ms(end - now < 20 ? end - now : 20);
}

struct req {
    sb_buf_t body;
    bool too_large;
    int64_t t0;
};

/* Holds connection c open, unanswered, until its client closes it (true) or
 * the hold ends (false). */
static bool hold_until_client_gone(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int64_t end = sb_mono_ns() / 1000000 + hold_max_ms;
    while (ci && !ps_stopping() && sb_mono_ns() / 1000000 < end) {
        struct pollfd p = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
        int n = poll(&p, 1, 50);
        if (n > 0) {
            if (p.revents & (POLLRDHUP | POLLHUP | POLLERR))
                return true;
            char b;
            ssize_t got = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
            if (got == 0)
                return true;
            sb_sleep_ms(50); /* the client sent more (a pipelined request): keep it waiting */
        }
    }
    return false;
}

/* The route: fills a (status 0 = no route). */
static void route(struct MHD_Connection *c, const char *method, const char *url, struct req *rq,
                  const char *trace, ps_answer_t *a)
{
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST"), del = !strcmp(method, "DELETE");
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
    bool known = true;
    if (!strcmp(url, "/healthz") && get) {
        sb_buf_adds(&a->body, "{\"status\":\"ok\"}");
        a->status = 200;
    } else if (!strcmp(url, "/v1/charges")) {
        const char *k = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "idempotency_key");
        if (post)
            ps_ledger_charge(key, rq->body.buf, rq->body.len, trace, a);
        else if (get && k)
            ps_ledger_find_by_key(k, a);
        else if (get)
            ps_answer_error(a, 400, "invalid_request_error",
                            "GET /v1/charges needs ?idempotency_key= (every charge: /v1/admin/charges)");
        else
            known = false;
    } else if (!strncmp(url, "/v1/charges/", 12) && url[12] && !strchr(url + 12, '/')) {
        if (get)
            ps_ledger_get_charge(url + 12, a);
        else
            known = false;
    } else if (!strcmp(url, "/v1/refunds")) {
        if (post)
            ps_ledger_refund(key, rq->body.buf, rq->body.len, trace, a);
        else
            known = false;
    } else if (!strcmp(url, "/v1/admin/modes")) {
        if (post)
            ps_ledger_set_mode(rq->body.buf, rq->body.len, a);
        else if (del)
            ps_ledger_clear_modes(a);
        else
            known = false;
    } else if (!strcmp(url, "/v1/admin/totals") && get) {
        ps_ledger_totals(a);
    } else if (!strcmp(url, "/v1/admin/charges") && get) {
        ps_ledger_list(a);
    } else if (!strcmp(url, "/v1/admin/totals") || !strcmp(url, "/v1/admin/charges") ||
               !strcmp(url, "/healthz")) {
        known = false;
    } else {
        ps_answer_error(a, 404, "invalid_request_error", "no such path");
    }
    if (!known)
        ps_answer_error(a, 405, "invalid_request_error", "%s is not allowed on this path",
                        get || post || del || !strcmp(method, "PUT") ? method : "this method");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls)
{
    (void)cls;
    (void)version;
    struct req *rq = *req_cls;
    if (!rq) {
        rq = sb_calloc(1, sizeof *rq);
        sb_buf_init(&rq->body);
        rq->t0 = sb_mono_ns();
        *req_cls = rq;
        return MHD_YES;
    }
    if (*upload_size) {
        if (rq->body.len + *upload_size > MAX_BODY)
            rq->too_large = true; /* read and drop the rest, then answer 413 */
        else
            sb_buf_add(&rq->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }

    char tracebuf[SB_UUID_LEN + 1];
    const char *trace = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Trace-Id");
    if (!sb_log_trace_valid(trace)) {
        sb_uuid_v4(tracebuf);
        trace = tracebuf;
    }
    sb_log_set_trace(trace);
    ps_answer_t a = {.body = SB_BUF_INIT};
    if (rq->too_large)
        ps_answer_error(&a, 413, "invalid_request_error", "request body over %u bytes", MAX_BODY);
    else
        route(c, method, url, rq, trace, &a);

    enum MHD_Result ret = MHD_NO;
    bool gave_up = false;
    if (a.withhold) {
        gave_up = hold_until_client_gone(c);
    } else {
        size_t len;
        char *data = sb_buf_detach(&a.body, &len);
        struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(r, "Content-Type", "application/json");
        MHD_add_response_header(r, "X-Trace-Id", trace);
        ret = MHD_queue_response(c, (unsigned)a.status, r);
        MHD_destroy_response(r);
    }
    /* access log: one line per request (the path only: no query, no body) */
    sb_buf_t f = SB_BUF_INIT;
    sb_buf_adds(&f, "\"method\":");
    sb_buf_add_json_str(&f, method, strnlen(method, 16));
    sb_buf_adds(&f, ",\"path\":");
    sb_buf_add_json_str(&f, url, strnlen(url, 200));
    sb_buf_addf(&f, ",\"status\":%d,\"ms\":%.3f", a.withhold ? 0 : a.status,
                (double)(sb_mono_ns() - rq->t0) / 1e6);
    if (a.withhold)
        sb_buf_addf(&f, ",\"withheld\":true,\"client_gave_up\":%s", gave_up ? "true" : "false");
    sb_log_fields(a.status >= 500 ? SB_LOG_WARN : SB_LOG_INFO, f.buf, "access");
    sb_buf_release(&f);
    sb_buf_release(&a.body);
    sb_log_set_trace(NULL);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct req *rq = *req_cls;
    if (rq) {
        sb_buf_release(&rq->body);
        free(rq);
        *req_cls = NULL;
    }
}

int main(void)
{
    sb_log_init("paysim");
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    long port = sb_cfg_int("PAYSIM_PORT", 7190, 0, 65535);
    hold_max_ms = sb_cfg_int("PAYSIM_HOLD_MAX_MS", 120000, 0, 3600000);
    /* set and empty means no webhooks (sb_cfg_str would give the default) */
    const char *url = getenv("PAYSIM_WEBHOOK_URL");
    ps_webhook_cfg_t wcfg = {
        .url = url ? url : "http://127.0.0.1:8080/payments/webhook",
        .secret = sb_cfg_str("PAYSIM_WEBHOOK_SECRET", "sb-dev-webhook-secret"),
        .retry_ms = sb_cfg_int("PAYSIM_WEBHOOK_RETRY_MS", 200, 1, 600000),
        .timeout_ms = sb_cfg_int("PAYSIM_WEBHOOK_TIMEOUT_MS", 5000, 100, 600000),
        .duplicate_lag_ms = sb_cfg_int("PAYSIM_DUPLICATE_LAG_MS", 300, 0, 600000),
    };
    if (!wcfg.secret[0]) {
        sb_error("PAYSIM_WEBHOOK_SECRET must not be empty");
        return 1;
    }
    ps_ledger_init();
    if (!ps_webhook_start(&wcfg)) {
        sb_error("cannot start the webhook sender thread");
        ps_ledger_free();
        return 1;
    }

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_ERROR_LOG | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
            MHD_USE_POLL,
        (uint16_t)port, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(64 * 1024), MHD_OPTION_END);
    if (!d) {
        sb_error("cannot listen on 127.0.0.1:%ld", port);
        ps_webhook_stop();
        ps_ledger_free();
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    sb_info("paysim listening on http://127.0.0.1:%u; webhooks to %s", di ? di->port : (unsigned)port,
            wcfg.url[0] ? wcfg.url : "(none: PAYSIM_WEBHOOK_URL is empty)");
    int sig;
    sigwait(&stop, &sig);
    sb_info("signal %d: stopping", sig);
    atomic_store(&stopping, true); /* ends delays and held connections */
    MHD_stop_daemon(d);
    ps_webhook_stop();
    ps_ledger_free();
    sb_http_thread_cleanup();
    return 0;
}
