#define _GNU_SOURCE /* memmem, strcasestr */
/* The outbound HTTP client (sb/http.h) against a real HTTP/1.1 server on
 * loopback: a small one in this file, a listening socket on a port the OS
 * picks and a thread per connection (keep-alive), answering by path:
 *
 *   POST /v1/charges    201, the JSON body back with an extra field ("object")
 *   GET  /status/NNN    status NNN with a JSON error body
 *   GET  /slow/MS       waits MS ms (or until the client hangs up), then 200
 *   GET  /big           200 announcing 2 MB in Content-Length
 *   GET  /big-stream    200 without Content-Length, 256 KB until close
 *   GET  /malformed     200 with a truncated JSON body
 *   GET  /wrong-type    200 with JSON whose field has the wrong type
 *   GET  /redirect      302 to /v1/charges
 *
 * The server records every request (method, path, headers, body) for the
 * assertions. Covers the JSON round trip with the headers the server saw,
 * 4xx/5xx as data with their body, timeouts (UNAVAILABLE for our own limit,
 * DEADLINE_EXCEEDED for the caller's), connection refused, oversized and
 * malformed answers (INTERNAL), no redirects, connection reuse and
 * concurrent callers. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kitchen.pb-c.h"
#include "sb/http.h"
#include "sb/log.h"
#include "sb/util.h"

/* ------------------------------------------------------------ the server */

#define MAX_CONNS 64
#define MAX_SEEN 256

struct seen {
    char method[16], path[128];
    char *head; /* header block, malloc'd */
    char *body; /* malloc'd */
    size_t body_len;
};

static struct {
    int listen_fd, port;
    pthread_t acceptor;
    pthread_mutex_t mu;
    int conn_fds[MAX_CONNS];
    pthread_t conn_threads[MAX_CONNS];
    int n_conns;
    struct seen seen[MAX_SEEN];
    int n_seen;
    atomic_bool stopping;
} srv;

static bool send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

/* One write per answer (two would meet Nagle and delayed ACK: 40 ms each). */
static bool respond(int fd, int status, const char *ctype, const char *body, const char *extra)
{
    size_t cap = strlen(body) + 512;
    char *msg = malloc(cap);
    int n = snprintf(msg, cap, "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n%s",
                     status, ctype, strlen(body), extra ? extra : "", body);
    bool ok = send_all(fd, msg, (size_t)n);
    free(msg);
    return ok;
}

/* Reads one request; false at EOF or on garbage. */
static bool read_request(int fd, char *buf, size_t cap, size_t *used, struct seen *out)
{
    char *end;
    while (!(end = memmem(buf, *used, "\r\n\r\n", 4))) {
        if (*used == cap)
            return false;
        ssize_t r = recv(fd, buf + *used, cap - *used, 0);
        if (r <= 0)
            return false;
        *used += (size_t)r;
    }
    size_t head_len = (size_t)(end - buf) + 4;
    memset(out, 0, sizeof *out);
    if (sscanf(buf, "%15s %127s", out->method, out->path) != 2)
        return false;
    out->head = strndup(buf, head_len);
    size_t clen = 0;
    const char *cl = strcasestr(out->head, "\r\nContent-Length:");
    if (cl)
        clen = strtoul(cl + 17, NULL, 10);
    while (*used < head_len + clen) {
        if (*used == cap)
            return false;
        ssize_t r = recv(fd, buf + *used, cap - *used, 0);
        if (r <= 0)
            return false;
        *used += (size_t)r;
    }
    out->body = strndup(buf + head_len, clen);
    out->body_len = clen;
    memmove(buf, buf + head_len + clen, *used - head_len - clen);
    *used -= head_len + clen;
    return true;
}

/* Answers one request; false closes the connection. */
static bool answer(int fd, const struct seen *rq)
{
    const char *p = rq->path;
    if (!strcmp(p, "/v1/charges") && !strcmp(rq->method, "POST")) {
        char *body = malloc(rq->body_len + 64);
        if (rq->body_len > 1 && rq->body[0] == '{')
            sprintf(body, "{\"object\":\"charge\",%s", rq->body + 1);
        else
            strcpy(body, "{\"object\":\"charge\"}");
        bool ok = respond(fd, 201, "application/json", body, NULL);
        free(body);
        return ok;
    }
    if (!strncmp(p, "/status/", 8)) {
        char body[128];
        snprintf(body, sizeof body, "{\"error\":{\"code\":\"status_%s\"}}", p + 8);
        return respond(fd, atoi(p + 8), "application/json", body, NULL);
    }
    if (!strncmp(p, "/slow/", 6)) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, atoi(p + 6)) != 0)
            return false; /* the client hung up first */
        return respond(fd, 200, "application/json", "{\"title\":\"late\"}", NULL);
    }
    if (!strcmp(p, "/big")) {
        const char *head =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n";
        send_all(fd, head, strlen(head));
        return false;
    }
    if (!strcmp(p, "/big-stream")) {
        const char *head =
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n";
        static char chunk[16384];
        memset(chunk, 'x', sizeof chunk);
        if (send_all(fd, head, strlen(head)))
            for (int i = 0; i < 16 && send_all(fd, chunk, sizeof chunk); i++)
                ;
        return false;
    }
    if (!strcmp(p, "/malformed"))
        return respond(fd, 200, "application/json", "{\"title\": \"Cats\", ", NULL);
    if (!strcmp(p, "/wrong-type"))
        return respond(fd, 200, "application/json", "{\"title\": 5}", NULL);
    if (!strcmp(p, "/redirect"))
        return respond(fd, 302, "text/plain", "moved", "Location: /v1/charges\r\n");
    return respond(fd, 404, "text/plain", "no such path", NULL);
}

static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    size_t cap = 1 << 20, used = 0;
    char *buf = malloc(cap);
    struct seen rq;
    while (!atomic_load(&srv.stopping) && read_request(fd, buf, cap, &used, &rq)) {
        pthread_mutex_lock(&srv.mu);
        bool kept = srv.n_seen < MAX_SEEN;
        if (kept)
            srv.seen[srv.n_seen++] = rq;
        pthread_mutex_unlock(&srv.mu);
        bool go_on = answer(fd, &rq);
        if (!kept) {
            free(rq.head);
            free(rq.body);
        }
        if (!go_on)
            break;
    }
    shutdown(fd, SHUT_RDWR);
    free(buf);
    return NULL;
}

static void *accept_loop(void *arg)
{
    for (;;) {
        int fd = accept(srv.listen_fd, NULL, NULL);
        if (fd < 0)
            return NULL; /* the listening socket was shut down */
        pthread_mutex_lock(&srv.mu);
        if (srv.n_conns == MAX_CONNS || atomic_load(&srv.stopping)) {
            pthread_mutex_unlock(&srv.mu);
            close(fd);
            continue;
        }
        srv.conn_fds[srv.n_conns] = fd;
        pthread_create(&srv.conn_threads[srv.n_conns], NULL, serve_conn, (void *)(intptr_t)fd);
        srv.n_conns++;
        pthread_mutex_unlock(&srv.mu);
    }
}

static void server_start(void)
{
    memset(&srv, 0, sizeof srv);
    pthread_mutex_init(&srv.mu, NULL);
    srv.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(srv.listen_fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(srv.listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(srv.listen_fd, 64), 0);
    socklen_t len = sizeof sa;
    getsockname(srv.listen_fd, (struct sockaddr *)&sa, &len);
    srv.port = ntohs(sa.sin_port);
    pthread_create(&srv.acceptor, NULL, accept_loop, NULL);
}

static void server_stop(void)
{
    atomic_store(&srv.stopping, true);
    shutdown(srv.listen_fd, SHUT_RDWR);
    pthread_join(srv.acceptor, NULL);
    close(srv.listen_fd);
    pthread_mutex_lock(&srv.mu);
    for (int i = 0; i < srv.n_conns; i++)
        shutdown(srv.conn_fds[i], SHUT_RDWR);
    pthread_mutex_unlock(&srv.mu);
    for (int i = 0; i < srv.n_conns; i++) {
        pthread_join(srv.conn_threads[i], NULL);
        close(srv.conn_fds[i]);
    }
    for (int i = 0; i < srv.n_seen; i++) {
        free(srv.seen[i].head);
        free(srv.seen[i].body);
    }
    pthread_mutex_destroy(&srv.mu);
}

static int n_seen(void)
{
    pthread_mutex_lock(&srv.mu);
    int n = srv.n_seen;
    pthread_mutex_unlock(&srv.mu);
    return n;
}

static int n_conns(void)
{
    pthread_mutex_lock(&srv.mu);
    int n = srv.n_conns;
    pthread_mutex_unlock(&srv.mu);
    return n;
}

/* The value of header `name` in the last request the server saw, into out. */
static bool last_header(const char *name, char *out, size_t n)
{
    pthread_mutex_lock(&srv.mu);
    bool found = false;
    if (srv.n_seen > 0) {
        const char *h = srv.seen[srv.n_seen - 1].head;
        size_t nl = strlen(name);
        for (const char *l = strstr(h, "\r\n"); l && l[2] != '\r'; l = strstr(l + 2, "\r\n")) {
            if (!strncasecmp(l + 2, name, nl) && l[2 + nl] == ':') {
                const char *v = l + 3 + nl;
                while (*v == ' ')
                    v++;
                snprintf(out, n, "%.*s", (int)strcspn(v, "\r"), v);
                found = true;
                break;
            }
        }
    }
    pthread_mutex_unlock(&srv.mu);
    return found;
}

/* ------------------------------------------------------------ the tests */

static sb_arena_t *a;
static sb_buf_t err;

static char *url(const char *path)
{
    return sb_arena_printf(a, "http://127.0.0.1:%d%s", srv.port, path);
}

static void setup(void)
{
    sb_log_init("test-http");
    sb_log_set_level(SB_LOG_WARN);
    server_start();
    a = sb_arena_new();
    sb_buf_init(&err);
}

static void teardown(void)
{
    sb_http_thread_cleanup(); /* closes our keep-alive connections first */
    server_stop();
    sb_buf_release(&err);
    sb_arena_free(a);
    sb_log_set_trace(NULL);
}

TestSuite(http, .init = setup, .fini = teardown, .timeout = 60);

Test(http, json_post_round_trip_with_trace_and_idempotency_headers)
{
    sb_log_set_trace("trace-http-1");
    Sb__Test__Kitchen k = SB__TEST__KITCHEN__INIT;
    k.title = "Cats";
    k.amount = 120000;
    k.grade = SB__TEST__GRADE__VIP;
    sb_http_request_t rq = {
        .url = url("/v1/charges"),
        .json = &k.base,
        .idempotency_key = "key-42",
        .timeout_ms = 5000,
        .response_type = &sb__test__kitchen__descriptor,
    };
    sb_http_response_t resp;
    cr_assert_eq(sb_http_send(&rq, a, &resp, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(resp.status, 201);
    cr_assert_str_eq(resp.content_type, "application/json");
    cr_assert(strstr(resp.body, "\"object\":\"charge\""), "%s", resp.body);
    cr_assert_not_null(resp.message); /* the unknown "object" field was skipped */
    const Sb__Test__Kitchen *back = (const Sb__Test__Kitchen *)resp.message;
    cr_assert_str_eq(back->title, "Cats");
    cr_assert_eq(back->amount, 120000);
    cr_assert_eq(back->grade, SB__TEST__GRADE__VIP);

    cr_assert_eq(n_seen(), 1);
    cr_assert_str_eq(srv.seen[0].method, "POST");
    cr_assert(strstr(srv.seen[0].body, "\"title\":\"Cats\""), "%s", srv.seen[0].body);
    char v[128];
    cr_assert(last_header("X-Trace-Id", v, sizeof v));
    cr_assert_str_eq(v, "trace-http-1");
    cr_assert(last_header("Idempotency-Key", v, sizeof v));
    cr_assert_str_eq(v, "key-42");
    cr_assert(last_header("Content-Type", v, sizeof v));
    cr_assert_str_eq(v, "application/json");
    cr_assert(last_header("Accept", v, sizeof v));
    cr_assert_str_eq(v, "application/json");
    cr_assert(last_header("User-Agent", v, sizeof v));
    cr_assert_str_eq(v, "showbook/test-http");
    cr_assert_not(last_header("Expect", v, sizeof v), "no 100-continue");
}

Test(http, caller_headers_are_sent_and_replace_ours)
{
    sb_http_header_t h[] = {{"Authorization", "Bearer sk_test_1"},
                            {"Content-Type", "application/vnd.x+json"}};
    const char raw[] = "{}";
    sb_http_request_t rq = {.method = "PUT",
                            .url = url("/v1/charges"),
                            .headers = h,
                            .n_headers = 2,
                            .body = raw,
                            .body_len = 2,
                            .timeout_ms = 5000};
    sb_http_response_t resp;
    cr_assert_eq(sb_http_send(&rq, a, &resp, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(resp.status, 404); /* the server only knows POST there */
    cr_assert_str_eq(srv.seen[0].method, "PUT");
    cr_assert_str_eq(srv.seen[0].body, "{}");
    char v[128];
    cr_assert(last_header("Authorization", v, sizeof v));
    cr_assert_str_eq(v, "Bearer sk_test_1");
    cr_assert(last_header("Content-Type", v, sizeof v));
    cr_assert_str_eq(v, "application/vnd.x+json");
    cr_assert_not(last_header("Idempotency-Key", v, sizeof v));
    cr_assert_not(last_header("X-Trace-Id", v, sizeof v), "no trace id set on this thread");
}

Test(http, trace_id_from_the_rpc_when_the_thread_has_none)
{
    sb_rpc_ctx_t ctx = {.deadline_ms = INT64_MAX, .trace_id = "trace-from-ctx"};
    sb_http_request_t rq = {.url = url("/status/200"), .ctx = &ctx};
    sb_http_response_t resp;
    cr_assert_eq(sb_http_send(&rq, a, &resp, &err), SB_OK, "%s", err.buf);
    char v[128];
    cr_assert(last_header("X-Trace-Id", v, sizeof v));
    cr_assert_str_eq(v, "trace-from-ctx");
    cr_assert_str_eq(srv.seen[0].method, "GET");
}

Test(http, client_and_server_errors_are_data_with_their_body)
{
    int codes[] = {400, 402, 409, 422, 500, 503};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        char path[32], want[64];
        snprintf(path, sizeof path, "/status/%d", codes[i]);
        snprintf(want, sizeof want, "\"code\":\"status_%d\"", codes[i]);
        sb_http_request_t rq = {.method = "POST",
                                .url = url(path),
                                .idempotency_key = "k",
                                .timeout_ms = 5000,
                                .response_type = &sb__test__kitchen__descriptor};
        sb_http_response_t resp;
        cr_assert_eq(sb_http_send(&rq, a, &resp, &err), SB_OK, "%d: %s", codes[i], err.buf);
        cr_assert_eq(resp.status, codes[i]);
        cr_assert_not(sb_http_is_success(&resp));
        cr_assert(strstr(resp.body, want), "%s", resp.body);
        cr_assert_null(resp.message, "an error body is not parsed as the success type");
    }
    cr_assert_eq(n_conns(), 1, "one kept-alive connection for all six calls");
}

Test(http, redirects_are_not_followed)
{
    sb_http_request_t rq = {.url = url("/redirect"), .timeout_ms = 5000};
    sb_http_response_t resp;
    cr_assert_eq(sb_http_send(&rq, a, &resp, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(resp.status, 302);
    cr_assert_str_eq(resp.body, "moved");
    cr_assert_eq(n_seen(), 1);
}

Test(http, own_timeout_is_unavailable_within_bounds)
{
    sb_http_request_t rq = {.url = url("/slow/3000"), .timeout_ms = 300};
    sb_http_response_t resp;
    int64_t t0 = sb_now_ms();
    cr_assert_eq(sb_http_send(&rq, a, &resp, &err), SB_UNAVAILABLE, "%s", err.buf);
    int64_t took = sb_now_ms() - t0;
    cr_assert(took >= 290 && took < 1500, "took %lld ms", (long long)took);
    cr_assert(strstr(err.buf, "timed out"), "%s", err.buf);
    cr_assert_eq(resp.status, 0);
}

Test(http, callers_deadline_is_deadline_exceeded_within_bounds)
{
    sb_rpc_ctx_t ctx = {.deadline_ms = sb_now_ms() + 300, .trace_id = "t"};
    sb_http_request_t rq = {.url = url("/slow/3000"), .ctx = &ctx, .timeout_ms = 5000};
    sb_http_response_t resp;
    int64_t t0 = sb_now_ms();
    cr_assert_eq(sb_http_send(&rq, a, &resp, &err), SB_DEADLINE_EXCEEDED, "%s", err.buf);
    int64_t took = sb_now_ms() - t0;
    cr_assert(took >= 250 && took < 1500, "took %lld ms", (long long)took);

    /* the shorter explicit timeout wins over a far deadline: our limit, UNAVAILABLE */
    sb_buf_reset(&err);
    ctx.deadline_ms = sb_now_ms() + 10000;
    rq.timeout_ms = 200;
    cr_assert_eq(sb_http_send(&rq, a, &resp, &err), SB_UNAVAILABLE, "%s", err.buf);
}

Test(http, a_deadline_already_gone_sends_nothing)
{
    sb_rpc_ctx_t ctx = {.deadline_ms = sb_now_ms() - 1, .trace_id = "t"};
    sb_http_request_t rq = {.url = url("/v1/charges"), .ctx = &ctx};
    sb_http_response_t resp;
    cr_assert_eq(sb_http_send(&rq, a, &resp, &err), SB_DEADLINE_EXCEEDED);
    usleep(50 * 1000);
    cr_assert_eq(n_seen(), 0);
    cr_assert_eq(n_conns(), 0);
}

Test(http, connection_refused_is_unavailable)
{
    /* a bound socket that does not listen: connect() is refused, and the port
     * stays ours for the length of the test */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    sb_http_request_t rq = {.url =
                                sb_arena_printf(a, "http://127.0.0.1:%d/v1/charges", ntohs(sa.sin_port)),
                            .timeout_ms = 5000};
    sb_http_response_t resp;
    int64_t t0 = sb_now_ms();
    cr_assert_eq(sb_http_send(&rq, a, &resp, &err), SB_UNAVAILABLE, "%s", err.buf);
    cr_assert_lt(sb_now_ms() - t0, 1000);
    cr_assert(strstr(err.buf, "cannot connect"), "%s", err.buf);
    cr_assert_eq(resp.status, 0);
    close(fd);
}

Test(http, oversized_answers_are_refused)
{
    /* announced by Content-Length: refused before the body is read */
    sb_http_request_t rq = {.url = url("/big"), .timeout_ms = 5000, .max_response = 1000};
    sb_http_response_t resp;
    cr_assert_eq(sb_http_send(&rq, a, &resp, &err), SB_INTERNAL, "%s", err.buf);
    cr_assert(strstr(err.buf, "larger than 1000 bytes"), "%s", err.buf);
    cr_assert_eq(resp.body_len, 0);
    /* streamed without a length: cut off at the cap */
    sb_buf_reset(&err);
    rq.url = url("/big-stream");
    cr_assert_eq(sb_http_send(&rq, a, &resp, &err), SB_INTERNAL, "%s", err.buf);
    cr_assert(strstr(err.buf, "larger than 1000 bytes"), "%s", err.buf);
    /* the default cap (1 MiB) lets 256 KB through */
    sb_buf_reset(&err);
    rq.max_response = 0;
    cr_assert_eq(sb_http_send(&rq, a, &resp, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(resp.body_len, 16 * 16384);
}

Test(http, malformed_json_answers_are_internal)
{
    /* INTERNAL, not INVALID_ARGUMENT: the provider broke the contract, and a
     * handler passing the status on must not tell its own client "400". */
    const char *paths[] = {"/malformed", "/wrong-type"};
    for (int i = 0; i < 2; i++) {
        sb_buf_reset(&err);
        sb_http_request_t rq = {
            .url = url(paths[i]), .timeout_ms = 5000, .response_type = &sb__test__kitchen__descriptor};
        sb_http_response_t resp;
        cr_assert_eq(sb_http_send(&rq, a, &resp, &err), SB_INTERNAL, "%s", paths[i]);
        cr_assert(strstr(err.buf, "is not a sb.test.Kitchen"), "%s", err.buf);
        cr_assert_eq(resp.status, 200);
        cr_assert_null(resp.message);
        cr_assert(strstr(resp.body, "\"title\""), "the raw body stays for the log: %s", resp.body);
    }
}

Test(http, unusable_requests_send_nothing)
{
    sb_http_header_t inject[] = {{"X-A", "b\r\nX-Evil: 1"}};
    sb_http_request_t bad[] = {
        {.url = url("/v1/charges"), .headers = inject, .n_headers = 1},
        {.url = url("/v1/charges"), .idempotency_key = "k\r\nX-Evil: 1"},
        {.url = url("/v1/charges"), .method = "post"},
        {.url = NULL},
        {.url = "ftp://127.0.0.1/x"},
        {.url = "file:///etc/passwd"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sb_buf_reset(&err);
        sb_http_response_t resp;
        cr_assert_eq(sb_http_send(&bad[i], a, &resp, &err), SB_INVALID_ARGUMENT, "case %zu: %s", i,
                     err.buf);
    }
    cr_assert_eq(n_seen(), 0);
}

#define N_THREADS 8
#define N_CALLS 20

static void *caller(void *arg)
{
    sb_arena_t *ta = sb_arena_new();
    sb_buf_t terr = SB_BUF_INIT;
    intptr_t ok = 0;
    for (int i = 0; i < N_CALLS; i++) {
        Sb__Test__Kitchen k = SB__TEST__KITCHEN__INIT;
        k.title = sb_arena_printf(ta, "t%d-%d", (int)(intptr_t)arg, i);
        sb_http_request_t rq = {.url = sb_arena_printf(ta, "http://127.0.0.1:%d/v1/charges", srv.port),
                                .json = &k.base,
                                .timeout_ms = 5000,
                                .response_type = &sb__test__kitchen__descriptor};
        sb_http_response_t resp;
        if (sb_http_send(&rq, ta, &resp, &terr) == SB_OK && resp.status == 201 &&
            !strcmp(((Sb__Test__Kitchen *)resp.message)->title, k.title))
            ok++;
    }
    sb_buf_release(&terr);
    sb_arena_free(ta);
    return (void *)ok; /* the thread's handle is freed as it exits */
}

Test(http, concurrent_callers_each_reuse_their_connection)
{
    pthread_t t[N_THREADS];
    for (intptr_t i = 0; i < N_THREADS; i++)
        pthread_create(&t[i], NULL, caller, (void *)i);
    for (int i = 0; i < N_THREADS; i++) {
        void *ok;
        pthread_join(t[i], &ok);
        cr_assert_eq((intptr_t)ok, N_CALLS, "thread %d: %ld of %d", i, (long)(intptr_t)ok, N_CALLS);
    }
    cr_assert_eq(n_seen(), N_THREADS * N_CALLS);
    cr_assert_eq(n_conns(), N_THREADS, "one connection per thread, kept alive");
}
