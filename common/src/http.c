/* Outbound HTTP (contract in sb/http.h) on libcurl's easy interface.
 *
 * One easy handle per thread, kept between calls in a pthread key. After a
 * call curl_easy_reset clears the options but keeps the handle's connection
 * cache, DNS cache and TLS session cache, so the next call from the same
 * worker to the provider reuses the kept-alive (TLS) connection instead of
 * paying a TCP and TLS handshake each time, which would be most of a charge's
 * latency. A gRPC worker runs one call at a time, so its handle is never
 * shared and needs no lock; a handle per call would reconnect every time, and
 * a curl share object pooling connections across threads would add locks for
 * nothing at our call rates. The key's destructor frees a thread's handle
 * when the thread exits (sb_http_thread_cleanup for the main thread).
 *
 * curl_global_init runs once (pthread_once; it is not thread-safe in the
 * libcurl Debian 12 ships). CURLOPT_NOSIGNAL because a threaded process must
 * not get SIGALRM from the resolver's timeouts.
 *
 * Statuses: an answer is OK whatever its HTTP status; no answer is
 * UNAVAILABLE, or DEADLINE_EXCEEDED when the caller's deadline is what ran
 * out; an oversized or unparsable answer is INTERNAL, not INVALID_ARGUMENT:
 * the provider broke the contract, the client that called us did nothing
 * wrong, and a handler passing the status on must not answer that client 400. */
#include "sb/http.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sb/alloc.h"
#include "sb/json.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/util.h"

/* ------------------------------------------------------------ the handle */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_key_t handle_key;
static CURLcode init_rc;

static void free_handle(void *h)
{
    curl_easy_cleanup(h);
}

static void global_init(void)
{
    init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (pthread_key_create(&handle_key, free_handle) != 0)
        init_rc = CURLE_FAILED_INIT;
}

/* The calling thread's handle, reset; NULL if libcurl cannot start. */
static CURL *thread_handle(void)
{
    pthread_once(&init_once, global_init);
    if (init_rc != CURLE_OK)
        return NULL;
    CURL *h = pthread_getspecific(handle_key);
    if (!h && (h = curl_easy_init()) != NULL)
        pthread_setspecific(handle_key, h);
    return h;
}

void sb_http_thread_cleanup(void)
{
    pthread_once(&init_once, global_init);
    if (init_rc != CURLE_OK)
        return;
    CURL *h = pthread_getspecific(handle_key);
    if (h) {
        pthread_setspecific(handle_key, NULL);
        curl_easy_cleanup(h);
    }
}

/* ------------------------------------------------------------ the request */

static bool valid_header(const char *name, const char *value)
{
    if (!name || !*name || !value || strpbrk(name, "\r\n: \t") || strpbrk(value, "\r\n"))
        return false;
    return true;
}

static bool valid_method(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > 16)
        return false;
    for (size_t i = 0; i < n; i++)
        if (m[i] < 'A' || m[i] > 'Z')
            return false;
    return true;
}

/* true when the caller's own headers name `name` (theirs replace ours). */
static bool caller_sets(const sb_http_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (!strcasecmp(req->headers[i].name, name))
            return true;
    return false;
}

static void add_header(struct curl_slist **list, sb_buf_t *line, const char *name, const char *value)
{
    sb_buf_reset(line);
    sb_buf_addf(line, "%s: %s", name, value);
    struct curl_slist *l = curl_slist_append(*list, line->buf);
    if (!l)
        sb_oom(line->len);
    *list = l;
}

static void add_default(struct curl_slist **list, sb_buf_t *line, const sb_http_request_t *req,
                        const char *name, const char *value)
{
    if (value && *value && !caller_sets(req, name))
        add_header(list, line, name, value);
}

/* ------------------------------------------------------------ the answer */

struct sink {
    sb_buf_t body;
    size_t max;
    bool too_big;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct sink *s = ud;
    size_t len = size * n;
    if (len > s->max - s->body.len) {
        s->too_big = true;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    sb_buf_add(&s->body, p, len);
    return len;
}

/* The status for a transfer that produced no usable answer. */
static sb_status_t transfer_failed(CURLcode rc, const sb_http_request_t *req, bool bounded_by_deadline,
                                   int64_t limit_ms, int64_t elapsed_ms, const char *detail,
                                   sb_buf_t *err)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        /* the caller's deadline is gone if it was the limit and the whole limit
         * was used (not just the shorter connect timeout), or if it has passed */
        if (req->ctx && (sb_rpc_remaining_ms(req->ctx) <= 0 ||
                         (bounded_by_deadline && elapsed_ms + 5 >= limit_ms))) {
            sb_buf_addf(err, "the caller's deadline passed after %lld ms: %s", (long long)elapsed_ms,
                        detail);
            return SB_DEADLINE_EXCEEDED;
        }
        sb_buf_addf(err, "timed out: %s", detail);
        return SB_UNAVAILABLE;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        sb_buf_addf(err, "unusable URL: %s", detail);
        return SB_INVALID_ARGUMENT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT: sb_buf_addf(err, "cannot connect: %s", detail); return SB_UNAVAILABLE;
    default:
        /* reset, TLS failure, empty reply, ...: no usable answer came */
        sb_buf_addf(err, "%s", detail);
        return SB_UNAVAILABLE;
    }
}

/* One counter per outcome (static strings, as sb_metrics_count wants). */
static void count(sb_status_t st, int http_status)
{
    const char *name;
    if (st == SB_OK && http_status < 300)
        name = "sb_http_client_requests_total{result=\"2xx\"}";
    else if (st == SB_OK && http_status < 400)
        name = "sb_http_client_requests_total{result=\"3xx\"}";
    else if (st == SB_OK && http_status < 500)
        name = "sb_http_client_requests_total{result=\"4xx\"}";
    else if (st == SB_OK)
        name = "sb_http_client_requests_total{result=\"5xx\"}";
    else if (st == SB_DEADLINE_EXCEEDED)
        name = "sb_http_client_requests_total{result=\"deadline\"}";
    else if (st == SB_UNAVAILABLE)
        name = "sb_http_client_requests_total{result=\"unavailable\"}";
    else
        name = "sb_http_client_requests_total{result=\"error\"}";
    sb_metrics_count(name, 1);
}

/* ------------------------------------------------------------ the call */

/* The request as given is unusable: says why in err. */
static bool check_request(const sb_http_request_t *req, const char *method, const char *trace,
                          sb_buf_t *err)
{
    if (!req->url)
        sb_buf_adds(err, "bad request: no URL");
    else if (!valid_method(method))
        sb_buf_addf(err, "bad request: method %.32s", method);
    else if (req->json && req->body)
        sb_buf_adds(err, "bad request: both a JSON and a raw body");
    else if (req->idempotency_key && !valid_header("Idempotency-Key", req->idempotency_key))
        sb_buf_adds(err, "bad request: the idempotency key has a line break");
    else if (req->content_type && !valid_header("Content-Type", req->content_type))
        sb_buf_adds(err, "bad request: the content type has a line break");
    else if (!valid_header("X-Trace-Id", trace))
        sb_buf_adds(err, "bad request: the trace id has a line break");
    else {
        for (size_t i = 0; i < req->n_headers; i++)
            if (!valid_header(req->headers[i].name, req->headers[i].value)) {
                sb_buf_addf(err, "bad request: header %.64s",
                            req->headers[i].name ? req->headers[i].name : "(no name)");
                return false;
            }
        return true;
    }
    return false;
}

sb_status_t sb_http_send(const sb_http_request_t *req, sb_arena_t *a, sb_http_response_t *resp,
                         sb_buf_t *err)
{
    memset(resp, 0, sizeof *resp);
    resp->body = "";
    resp->content_type = "";
    const char *method = req->method ? req->method : req->json || req->body ? "POST" : "GET";
    const char *trace = sb_log_trace();
    if (!*trace && req->ctx && req->ctx->trace_id)
        trace = req->ctx->trace_id;
    if (!check_request(req, method, trace, err))
        return SB_INVALID_ARGUMENT;

    /* The time limit: the caller's remaining time, the explicit timeout, or
     * the smaller of the two. */
    int64_t limit = req->timeout_ms > 0 ? req->timeout_ms : 0;
    bool by_deadline = false;
    if (req->ctx) {
        int64_t left = sb_rpc_remaining_ms(req->ctx);
        if (left <= 0) {
            sb_buf_addf(err, "the caller's deadline passed before %s %s was sent", method, req->url);
            count(SB_DEADLINE_EXCEEDED, 0);
            return SB_DEADLINE_EXCEEDED;
        }
        if (left != INT64_MAX && (limit == 0 || left <= limit)) {
            limit = left;
            by_deadline = true;
        }
    }
    if (limit == 0)
        limit = SB_HTTP_DEFAULT_TIMEOUT_MS;
    if (limit > INT32_MAX)
        limit = INT32_MAX; /* 24 days; a long is 32 bits on some targets */
    int64_t connect_limit =
        req->connect_timeout_ms > 0 ? req->connect_timeout_ms : SB_HTTP_DEFAULT_CONNECT_TIMEOUT_MS;
    if (connect_limit > limit)
        connect_limit = limit;

    CURL *h = thread_handle();
    if (!h) {
        sb_buf_adds(err, "libcurl failed to initialise");
        return SB_INTERNAL;
    }
    sb_status_t st = SB_OK;
    sb_buf_t line = SB_BUF_INIT, json = SB_BUF_INIT;
    struct sink sink = {SB_BUF_INIT,
                        req->max_response ? req->max_response : SB_HTTP_DEFAULT_MAX_RESPONSE, false};
    struct curl_slist *headers = NULL;
    char detail[CURL_ERROR_SIZE] = "";

    /* The body and the headers (the caller's own replace ours by name). */
    const void *body = req->body;
    size_t body_len = req->body_len;
    if (req->json) {
        sb_json_encode(req->json, &json);
        body = json.buf;
        body_len = json.len;
        add_default(&headers, &line, req, "Content-Type", "application/json");
    } else if (req->body) {
        add_default(&headers, &line, req, "Content-Type",
                    req->content_type ? req->content_type : "application/octet-stream");
    } else if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        struct curl_slist *l = curl_slist_append(headers, "Content-Type:"); /* none for an empty body */
        if (!l)
            sb_oom(16);
        headers = l;
    }
    if (req->response_type)
        add_default(&headers, &line, req, "Accept", "application/json");
    add_default(&headers, &line, req, "X-Trace-Id", trace);
    add_default(&headers, &line, req, "Idempotency-Key", req->idempotency_key);
    for (size_t i = 0; i < req->n_headers; i++)
        add_header(&headers, &line, req->headers[i].name, req->headers[i].value);
    struct curl_slist *l = curl_slist_append(headers, "Expect:"); /* no 100-continue round trip */
    if (!l)
        sb_oom(8);
    headers = l;

    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)limit);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_limit);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, detail);
    curl_easy_setopt(h, CURLOPT_USERAGENT, sb_arena_printf(a, "showbook/%s", sb_log_service()));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)sink.max);
    if (!strcmp(method, "HEAD")) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(method, "GET") && !body) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        /* POSTFIELDS sends the body with a Content-Length (empty for a bodiless
         * POST or DELETE); CUSTOMREQUEST renames the method. */
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
        if (strcmp(method, "POST"))
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }

    int64_t t0 = sb_mono_ns();
    CURLcode rc = curl_easy_perform(h);
    resp->elapsed_ms = (sb_mono_ns() - t0) / 1000000;
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (!detail[0])
        snprintf(detail, sizeof detail, "%s", curl_easy_strerror(rc));

    if (sink.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        resp->status = (int)code;
        sb_buf_addf(err, "%s %s: the answer is larger than %zu bytes", method, req->url, sink.max);
        st = SB_INTERNAL;
        goto out_reset_handle;
    }
    if (rc != CURLE_OK) {
        sb_buf_addf(err, "%s %s: ", method, req->url);
        st = transfer_failed(rc, req, by_deadline, limit, resp->elapsed_ms, detail, err);
        goto out_reset_handle;
    }
    resp->status = (int)code;
    char *ct = NULL;
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
        resp->content_type = sb_arena_strdup(a, ct);
    size_t n;
    char *got = sb_buf_detach(&sink.body, &n);
    sb_arena_on_free(a, free, got);
    resp->body = got;
    resp->body_len = n;
    if (req->response_type && sb_http_is_success(resp)) {
        sb_buf_t jerr = SB_BUF_INIT;
        if (sb_json_decode_flags(req->response_type, got, n, SB_JSON_IGNORE_UNKNOWN, a, &resp->message,
                                 &jerr) != SB_OK) {
            resp->message = NULL;
            sb_buf_addf(err, "%s %s: answer %d is not a %s: %s", method, req->url, resp->status,
                        req->response_type->name, jerr.buf);
            st = SB_INTERNAL;
        }
        sb_buf_release(&jerr);
    }

out_reset_handle:
    count(st, resp->status);
    sb_log(SB_LOG_DEBUG, "http %s %.*s -> %d %s (%lld ms)", method, (int)strcspn(req->url, "?"),
           req->url, resp->status, sb_status_name(st), (long long)resp->elapsed_ms);
    curl_easy_reset(h); /* drops our pointers (headers, buffers), keeps the connections */
    curl_slist_free_all(headers);
    sb_buf_release(&sink.body);
    sb_buf_release(&json);
    sb_buf_release(&line);
    return st;
}
