/* The gateway's HTTP server and the request pipeline:
 *
 *   limits -> route -> token + access policy -> rate limit -> JSON/path/query/
 *   headers -> request message -> this gateway's copy of a cached read
 *   (cached_answer) -> gRPC call with identity + trace metadata -> JSON or
 *   error body
 *
 * No thread per connection and no blocking call on a loop thread:
 * libmicrohttpd runs an epoll event loop per core (GATEWAY_THREADS), and a
 * request whose answer must wait suspends its connection
 * (MHD_suspend_connection) and is resumed by whoever brings the answer:
 *   - the gRPC call is started on the asynchronous client's completion queue
 *     (sb_rpc_call_start, sb/rpc.h); its callback, on a completion thread,
 *     stores the response and resumes the connection;
 *   - the rare blocking work (the Redis rate limit of the login rows,
 *     /readyz's probes, and the token's revocation check while the local
 *     denylist is not current, sb/authn.h) runs on a small pool of blocking
 *     threads.
 * When resumed, on_request is called again and the request goes on from its
 * phase (struct req); every answer leaves through respond().
 *
 * Routes, access policies, 201s, rate limits, header bindings and the choice
 * of backend all come from the API table (sb/api.h), generated from the
 * .proto options. The policy check here is a convenience (an early, cheap
 * refusal): every service checks the same policy again before its handler.
 *
 * Paths handled here rather than routed: /healthz /readyz /metrics /openapi.json.
 *
 * SIGTERM drains (drain() below; docs/internals.md, "Graceful drain"). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway.h"
#include "health.pb-c.h"
#include "sb/alloc.h"
#include "sb/api.h"
#include "sb/authn.h"
#include "sb/config.h"
#include "sb/events.h"
#include "sb/jwt.h"
#include "sb/log.h"
#include "sb/pb.h"
#include "sb/metrics.h"
#include "sb/ready.h"
#include "sb/redis.h"
#include "sb/registry.h"
#include "sb/rpc.h"
#include "sb/rpc_cache.h"
#include "sb/util.h"
#include "sb/json.h"

#define MAX_BODY (1u << 20)

/* The backends are the services of the registry (services/registry.txt,
 * sb/registry.h), found at $<NAME>_ADDR or their local default port. */
#define N_BACKENDS sb_registry_n

static struct {
    sb_authn_t *authn; /* verifies access tokens (ES256, JWT_PUBLIC_KEYS_DIR) */
    sb_redis_t *redis;
    int64_t timeout_ms;
    long login_limit; /* attempts per IP per minute */
    char **keys;      /* "GET /members/{userId}" per REST binding, for metrics and logs */
    size_t *key_at;   /* per API table row: the index of its first binding's key */
    size_t n_keys;
    /* the drain */
    atomic_bool draining;  /* SIGTERM came: /readyz answers 503 */
    atomic_bool closing;   /* the listener is closed: every answer carries Connection: close */
    atomic_int in_flight;  /* requests received and not yet completed */
    atomic_int conns;      /* open connections */
    atomic_long n_closing; /* answers sent with Connection: close */
} gw;

static int backend_index(const char *name)
{
    const sb_registry_entry_t *e = sb_registry_find(name);
    return e ? (int)(e - sb_registry) : -1;
}

/* "GET /members/{userId}" of a match, borrowed from gw.keys. */
static const char *binding_key(const sb_api_match_t *mt)
{
    return gw.keys[gw.key_at[mt->method - sb_api_methods] + (size_t)(mt->http - mt->method->http)];
}

typedef struct principal {
    sb_jwt_claims_t claims;
    const char *token;
    bool present;
} principal_t;

/* Where a request is (on_request is called again after each resume). */
enum phase {
    PH_NEW,      /* headers and body arriving, nothing decided yet */
    PH_WAIT,     /* suspended: a call or a blocking job runs for it */
    PH_STEP_ANS, /* resumed: a blocking step's answer (auth_*, rate_*) is in */
    PH_CALL_ANS, /* resumed: the call's answer is in st/resp/err */
    PH_BODY_ANS, /* resumed: the answer is in code/out (/readyz) */
    PH_LEAD,     /* resumed: waited on a fill whose leader went away; now leads it */
};

/* One request, from its first byte to on_completed (which frees it). */
struct req {
    struct MHD_Connection *c;
    sb_buf_t body;
    bool too_large;
    int64_t t0;
    enum phase phase;
    sb_arena_t *a;          /* from the complete request to on_completed */
    char trace[65], ip[64]; /* the trace id and the client's address */
    const char *metric_key; /* "GET /members/{userId}", "builtin" or "unrouted" (static) */
    principal_t who;        /* the token verified (borrowed from the connection's headers) */
    /* the routed row's call */
    const sb_api_method_t *row;
    const char *key;   /* binding_key of the match */
    const char *scope; /* its REST path, the rate limit's scope */
    int backend;
    bool auth_done, rate_done;    /* the token's check, the rate limit: done on a blocking thread */
    sb_status_t auth_st, rate_st; /* their answers (the message of a refusal in err) */
    ProtobufCMessage *msg;        /* the call's request (in a): what a finished write clears */
    sb_rpc_cache_call_t cc;       /* a cached read's look-up that missed, for its store */
    sb_status_t st;               /* the answer of the call */
    ProtobufCMessage *resp;       /* the call's response (in a) */
    int64_t ttl_ms;               /* the service's SB_MD_CACHE_TTL, or -1 */
    struct fill *fill;            /* the fill this request leads (its call fills a cached read) */
    struct req *fill_next;        /* waiting on another request's fill: the next waiter */
    sb_buf_t err;                 /* the message of st, auth_st or rate_st */
    /* the answer of a blocking job (/readyz) */
    int code;
    sb_buf_t out;
    void (*job)(struct req *); /* the blocking job to run, queued on jobs */
    struct req *job_next;
};

static struct {
    sb_rpc_loop_t *rpc;   /* the asynchronous gRPC client (GATEWAY_RPC_THREADS) */
    atomic_int suspended; /* connections suspended until a call or job resumes them */
} loop;

static void suspend(struct req *rq)
{
    atomic_fetch_add(&loop.suspended, 1);
    rq->phase = PH_WAIT;
    MHD_suspend_connection(rq->c);
}

/* From any thread, once per suspend: the request goes on in phase ph on its
 * loop thread. After this the request is no longer the caller's to touch. */
static void resume(struct req *rq, enum phase ph)
{
    rq->phase = ph;
    MHD_resume_connection(rq->c);
    atomic_fetch_sub(&loop.suspended, 1);
}

/* ---------------------------------------------------- blocking jobs */

/* A few threads for the work that can only be done blocking (hiredis'
 * synchronous API, the /readyz probes, sb_authn_verify asking Redis): a
 * request queues its job, suspends,
 * and the job resumes it. GATEWAY_BLOCKING_THREADS (2). */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct req *head, *tail;
    bool stop;
    pthread_t *threads;
    long n;
} jobs = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *jobs_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&jobs.mu);
    for (;;) {
        while (!jobs.head && !jobs.stop)
            pthread_cond_wait(&jobs.cv, &jobs.mu);
        if (!jobs.head)
            break;
        struct req *rq = jobs.head;
        jobs.head = rq->job_next;
        if (!jobs.head)
            jobs.tail = NULL;
        pthread_mutex_unlock(&jobs.mu);
        sb_log_set_trace(rq->trace);
        rq->job(rq); /* resumes rq */
        sb_log_set_trace(NULL);
        pthread_mutex_lock(&jobs.mu);
    }
    pthread_mutex_unlock(&jobs.mu);
    return NULL;
}

/* Suspends rq and queues fn, which resumes it. */
static void offload(struct req *rq, void (*fn)(struct req *))
{
    suspend(rq);
    rq->job = fn;
    rq->job_next = NULL;
    pthread_mutex_lock(&jobs.mu);
    if (jobs.tail)
        jobs.tail->job_next = rq;
    else
        jobs.head = rq;
    jobs.tail = rq;
    pthread_cond_signal(&jobs.cv);
    pthread_mutex_unlock(&jobs.mu);
}

static void jobs_start(long n)
{
    jobs.n = n;
    jobs.threads = sb_calloc((size_t)n, sizeof *jobs.threads);
    for (long i = 0; i < n; i++)
        pthread_create(&jobs.threads[i], NULL, jobs_main, NULL);
}

/* Runs what is queued, then joins the threads. */
static void jobs_stop(void)
{
    pthread_mutex_lock(&jobs.mu);
    jobs.stop = true;
    pthread_cond_broadcast(&jobs.cv);
    pthread_mutex_unlock(&jobs.mu);
    for (long i = 0; i < jobs.n; i++)
        pthread_join(jobs.threads[i], NULL);
    free(jobs.threads);
}

/* Queues body (handed over) with status code; a JSON body gets the API's
 * headers. While the gateway drains, the connection closes after it. */
static enum MHD_Result send_body(struct MHD_Connection *c, int code, const char *ctype, sb_buf_t *body,
                                 const char *trace, const gw_cache_headers_t *ch)
{
    size_t len;
    char *data = sb_buf_detach(body, &len);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", ctype);
    if (!strcmp(ctype, "application/json")) {
        if (ch->set) { /* a cached read (etag.c) */
            MHD_add_response_header(r, "ETag", ch->etag);
            MHD_add_response_header(r, "Cache-Control", ch->cache_control);
            if (ch->vary)
                MHD_add_response_header(r, "Vary", ch->vary);
        } else {
            MHD_add_response_header(r, "Cache-Control", "no-store");
        }
        MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
        if (trace)
            MHD_add_response_header(r, "X-Trace-Id", trace);
    }
    if (atomic_load(&gw.closing)) {
        MHD_add_response_header(r, "Connection", "close");
        atomic_fetch_add(&gw.n_closing, 1);
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)code, r);
    MHD_destroy_response(r);
    return ret;
}

/* error body: machine code first, then the message */
static int error_body(sb_buf_t *out, sb_status_t st, const char *msg)
{
    const char *code = sb_status_name(st);
    sb_buf_reset(out);
    sb_buf_adds(out, "{\"error\":{\"code\":");
    sb_buf_add_json_str(out, code, strlen(code));
    sb_buf_adds(out, ",\"message\":");
    sb_buf_add_json_str(out, msg, strlen(msg));
    sb_buf_adds(out, "}}");
    return sb_status_http(st);
}

/* The client's address: the peer, or, when GATEWAY_TRUST_FORWARDED=1 (the
 * gateway sits behind a proxy or load balancer that appends the client to
 * X-Forwarded-For), the rightmost X-Forwarded-For entry, the one our proxy
 * wrote. Used for the per-IP login rate limit and the access log. */
static bool trust_forwarded;

static const char *client_ip(struct MHD_Connection *c, char *buf, size_t n)
{
    const char *xff =
        trust_forwarded ? MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Forwarded-For") : NULL;
    if (xff && *xff) {
        const char *last = strrchr(xff, ',');
        last = last ? last + 1 : xff;
        while (*last == ' ')
            last++;
        size_t len = strcspn(last, " ");
        bool ok = len > 0 && len < n && len <= 45;
        for (size_t i = 0; ok && i < len; i++)
            ok = (last[i] >= '0' && last[i] <= '9') || (last[i] >= 'a' && last[i] <= 'f') ||
                 (last[i] >= 'A' && last[i] <= 'F') || last[i] == '.' || last[i] == ':';
        if (ok) {
            memcpy(buf, last, len);
            buf[len] = '\0';
            return buf;
        }
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(buf, n, "unknown");
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)n);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)n);
    }
    return buf;
}

/* ---------------------------------------------------------------- auth */

/* The bearer token of the request into p->token (borrowed from the
 * connection's headers, valid for the request). */
static sb_status_t bearer(struct MHD_Connection *c, principal_t *p, sb_buf_t *err)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    p->present = false;
    if (!h) {
        sb_buf_adds(err, "missing Authorization: Bearer token");
        return SB_UNAUTHENTICATED;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        sb_buf_adds(err, "Authorization must be a Bearer token");
        return SB_UNAUTHENTICATED;
    }
    p->token = h + 7;
    return SB_OK;
}

/* The early check of p->token (a convenience: every service verifies the
 * token again); p->present on OK. */
static sb_status_t verify(principal_t *p, sb_buf_t *err)
{
    sb_status_t st = sb_authn_verify(gw.authn, p->token, &p->claims, err);
    p->present = st == SB_OK;
    return st;
}

/* ------------------------------------------------------------ pipeline */

struct qctx {
    ProtobufCMessage *m;
    sb_arena_t *a;
    sb_buf_t *err;
    sb_status_t st;
};

static enum MHD_Result on_query(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    struct qctx *q = cls;
    if (q->st != SB_OK)
        return MHD_NO;
    sb_status_t st = sb_json_set_field(q->m, key, value ? value : "", q->a, q->err);
    if (st == SB_NOT_FOUND) {
        sb_buf_addf(q->err, "unknown query parameter %.64s", key);
        st = SB_INVALID_ARGUMENT;
    }
    q->st = st;
    return st == SB_OK ? MHD_YES : MHD_NO;
}

static bool has_field(const ProtobufCMessage *m, const char *name)
{
    return protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name) != NULL;
}

/* The bytes field `name` of msg set to a copy of body (in a). */
static sb_status_t set_raw_body(ProtobufCMessage *msg, const char *name, const sb_buf_t *body,
                                sb_arena_t *a, sb_buf_t *err)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, name);
    if (!f || f->type != PROTOBUF_C_TYPE_BYTES || f->label == PROTOBUF_C_LABEL_REPEATED) {
        sb_buf_addf(err, "%s has no bytes field %s", msg->descriptor->name, name);
        return SB_INTERNAL;
    }
    ProtobufCBinaryData *slot = (ProtobufCBinaryData *)(void *)((char *)msg + f->offset);
    slot->len = body->len;
    slot->data = sb_arena_alloc(a, body->len + 1);
    if (body->len)
        memcpy(slot->data, body->buf, body->len);
    sb_pb_mark_present(msg, f);
    return SB_OK;
}

/* The answer to a failed step of a routed request: its JSON error body in
 * out, returns the HTTP status. A 503's transport detail (addresses) is for
 * the log, not the client. */
static int status_answer(const char *key, int backend, sb_status_t st, sb_buf_t *err, sb_buf_t *out)
{
    if (st == SB_UNAVAILABLE && backend >= 0) {
        sb_error("%s -> %s service unavailable: %s", key, sb_registry[backend].name, err->buf);
        sb_buf_reset(err);
        sb_buf_addf(err, "the %s service is unavailable; try again later", sb_registry[backend].name);
    }
    int code = error_body(out, st, err->len ? err->buf : sb_status_name(st));
    if (code >= 500)
        sb_error("%s -> %d: %s", key, code, err->buf);
    return code;
}

static void rate_limit_job(struct req *rq)
{
    sb_buf_reset(&rq->err);
    rq->rate_st = sb_rate_limit(gw.redis, rq->scope, rq->ip, gw.login_limit, &rq->err);
    rq->rate_done = true;
    resume(rq, PH_STEP_ANS);
}

/* The token's check while the local denylist is not current: it asks Redis. */
static void verify_job(struct req *rq)
{
    sb_buf_reset(&rq->err);
    rq->auth_st = verify(&rq->who, &rq->err);
    rq->auth_done = true;
    resume(rq, PH_STEP_ANS);
}

/* sb_rpc_done_fn: on a completion thread */
static void call_done(void *arg, sb_status_t st, ProtobufCMessage *resp, const char *err, int64_t ttl_ms)
{
    struct req *rq = arg;
    rq->st = st;
    rq->resp = resp;
    rq->ttl_ms = ttl_ms;
    sb_buf_reset(&rq->err);
    sb_buf_adds(&rq->err, err);
    resume(rq, PH_CALL_ANS);
}

/* ------------------------------------------------------ fills in flight */

/* While the first miss of a cached read is filled (its call runs), the
 * misses of the same key wait for that answer instead of each calling the
 * service: when a hold or the max age clears a hot seat map, the readers
 * behind it cost the service one call, not one each. A miss only joins a
 * fill of the same generation (sb/cache.h): a read that began after a clear
 * never gets an answer read before it. Waiters are suspended connections,
 * so their number is bounded by GATEWAY_MAX_CONNECTIONS. */
struct fill {
    struct fill *next;
    size_t group;
    uint64_t gen;
    sb_buf_t key;
    struct req *waiters; /* suspended, chained by fill_next */
};

static struct {
    pthread_mutex_t mu;
    struct fill *head;
} fills = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* After a cached read's miss (rq->cc ready): true when rq now waits on a
 * fill already running for its key (suspended: the leader resumes it), false
 * when rq leads a new fill and must make the call. */
static bool fill_join(struct req *rq)
{
    size_t group = (size_t)(rq->cc.api - sb_api_methods);
    pthread_mutex_lock(&fills.mu);
    struct fill *f = fills.head;
    while (f && !(f->group == group && f->gen == rq->cc.gen && f->key.len == rq->cc.key.len &&
                  !memcmp(f->key.buf, rq->cc.key.buf, f->key.len)))
        f = f->next;
    if (f) { /* suspended under the lock, so the leader cannot resume it first */
        rq->fill_next = f->waiters;
        f->waiters = rq;
        suspend(rq);
        pthread_mutex_unlock(&fills.mu);
        sb_metrics_count("sb_gateway_cache_coalesced_total", 1);
        return true;
    }
    f = sb_calloc(1, sizeof *f);
    f->group = group;
    f->gen = rq->cc.gen;
    sb_buf_init(&f->key);
    sb_buf_add(&f->key, rq->cc.key.buf, rq->cc.key.len);
    f->next = fills.head;
    fills.head = f;
    rq->fill = f;
    pthread_mutex_unlock(&fills.mu);
    return false;
}

/* The leader's answer (code, body) goes to every request waiting on its fill. */
static void fill_done(struct req *rq, int code, const sb_buf_t *body)
{
    struct fill *f = rq->fill;
    if (!f)
        return;
    rq->fill = NULL;
    pthread_mutex_lock(&fills.mu);
    for (struct fill **p = &fills.head; *p; p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            break;
        }
    struct req *w = f->waiters;
    pthread_mutex_unlock(&fills.mu);
    while (w) {
        struct req *next = w->fill_next;
        sb_buf_reset(&w->out);
        sb_buf_add(&w->out, body->buf, body->len);
        w->code = code;
        resume(w, PH_BODY_ANS);
        w = next;
    }
    sb_buf_release(&f->key);
    free(f);
}

/* A leader that ends without its answer (on_completed with rq->fill still
 * set: libmicrohttpd closed the connection, e.g. its client went away while
 * the call ran, and never handed the resumed request back to on_request)
 * must not strand its waiters: they would wait, and every later miss of the
 * key with them, until a clear. The first waiter takes the fill over and
 * makes the call itself (PH_LEAD); with no waiter the fill just goes. */
static void fill_abandoned(struct req *rq)
{
    struct fill *f = rq->fill;
    if (!f)
        return;
    rq->fill = NULL;
    pthread_mutex_lock(&fills.mu);
    struct req *w = f->waiters;
    if (w) {
        f->waiters = w->fill_next;
        w->fill_next = NULL;
        w->fill = f;
    } else {
        for (struct fill **p = &fills.head; *p; p = &(*p)->next)
            if (*p == f) {
                *p = f->next;
                break;
            }
    }
    pthread_mutex_unlock(&fills.mu);
    sb_metrics_count("sb_gateway_cache_fills_abandoned_total", 1);
    if (w) {
        sb_warn("a cached read's fill lost its leader: another waiting read leads it");
        resume(w, PH_LEAD);
    } else {
        sb_buf_release(&f->key);
        free(f);
    }
}

/* The answer of the call (PH_CALL_ANS) in out; returns the HTTP status.
 * The gateway's cached answers this call may have changed go first, OK or
 * not (sb_rpc_cache_after_call); a cached read's OK answer is kept, as the
 * JSON body, for no longer than the service says it stays fresh. */
static int call_answer(struct req *rq, sb_buf_t *out)
{
    int code;
    sb_rpc_cache_after_call(rq->row, rq->msg);
    if (rq->st != SB_OK) {
        code = status_answer(rq->key, rq->backend, rq->st, &rq->err, out);
    } else {
        sb_buf_reset(out);
        sb_json_encode(rq->resp, out);
        sb_rpc_cache_store(&rq->cc, out->buf, out->len, rq->ttl_ms);
        code = rq->row->ok_status;
    }
    fill_done(rq, code, out); /* the same answer for the reads that waited on this one */
    return code;
}

/* A GET of a method declared cached ((sb.api.method).cache): 1 with the
 * JSON body in out when this gateway holds a fresh answer to the same
 * request for the same verified caller (sb/rpc_cache.h keys it as the
 * services key theirs: method, the caller unless the method is public, the
 * packed request); -1 when rq now waits on the fill of the same key that
 * another request leads (suspended: see fill_join); 0 when rq must call (a
 * miss: rq->cc is ready for the store in call_answer, and rq leads the
 * fill; or the method is not cached). Asked after the token, the access
 * policy and the request checks, so a revoked token or a refused caller
 * never reaches an answer in memory. */
static int cached_answer(struct req *rq, const sb_api_match_t *mt, ProtobufCMessage *msg, sb_buf_t *out)
{
    const sb_api_method_t *r = mt->method;
    if (!r->cache.max_age_ms || strcmp(mt->http->verb, "GET") != 0)
        return 0;
    const principal_t *who = &rq->who;
    sb_rpc_ctx_t ctx = {.user_id = who->present ? who->claims.sub : "",
                        .user_role = who->present ? who->claims.role : "",
                        .caller_service = ""};
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *bytes = sb_arena_alloc(rq->a, n ? n : 1);
    protobuf_c_message_pack(msg, bytes);
    sb_buf_reset(out);
    if (sb_rpc_cache_lookup(&rq->cc, r, &ctx, msg, bytes, n, out)) {
        sb_rpc_cache_call_release(&rq->cc);
        return 1;
    }
    if (!rq->cc.api) /* the cache is off (RPC_CACHE_MAX_ENTRIES=0) */
        return 0;
    return fill_join(rq) ? -1 : 0;
}

/* Suspends rq and starts its call (rq->row to rq->backend with rq->msg, as
 * the verified caller); call_done resumes it in PH_CALL_ANS. */
static void start_call(struct req *rq)
{
    const principal_t *who = &rq->who;
    /* suspended first: call_done may resume it before sb_rpc_call_start returns */
    sb_call_opts_t o = {.timeout_ms = gw.timeout_ms,
                        .trace_id = rq->trace,
                        .token = who->present ? who->token : NULL,
                        .client_ip = rq->ip};
    suspend(rq);
    sb_buf_reset(&rq->err);
    sb_status_t st = sb_rpc_call_start(
        loop.rpc, sb_channel_get(sb_registry_addr(sb_registry[rq->backend].name)), rq->row->service,
        rq->row->rpc->name, rq->msg, rq->a, &o, call_done, rq, &rq->err);
    if (st != SB_OK) {
        rq->st = st;
        rq->ttl_ms = -1;
        resume(rq, PH_CALL_ANS);
    }
}

/* The routed request up to its call: returns the HTTP status of an answer
 * in out, or 0 when the connection is suspended (a call or the rate limit
 * runs; on_request is called again when it is resumed). */
static int route_request(struct MHD_Connection *c, const sb_api_match_t *mt, struct req *rq,
                         sb_buf_t *out)
{
    const sb_api_method_t *r = mt->method;
    const char *key = binding_key(mt);
    sb_arena_t *a = rq->a;
    principal_t *who = &rq->who;
    sb_buf_t err = SB_BUF_INIT;
    sb_status_t st;
    int code;
    int backend = -1; /* none chosen yet */

    rq->row = r;
    rq->key = key;
    rq->scope = mt->http->path;
    rq->backend = -1;
    if (rq->too_large) {
        sb_buf_reset(out);
        sb_buf_adds(
            out, "{\"error\":{\"code\":\"PAYLOAD_TOO_LARGE\",\"message\":\"request body over 1 MiB\"}}");
        code = 413;
        goto out;
    }
    /* identity: needed unless public; optional on public paths, where a bad
     * token is still an error */
    if (!r->access.public_ || MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization")) {
        if (!rq->auth_done) {
            if ((st = bearer(c, who, &err)) != SB_OK)
                goto out_status;
            /* the local denylist answers without I/O; without it the check
             * asks Redis, blocking: on a blocking thread, then this runs
             * again from the top */
            if (!sb_authn_local_denylist_live(gw.authn)) {
                offload(rq, verify_job);
                sb_buf_release(&err);
                return 0;
            }
            rq->auth_st = verify(who, &err);
            rq->auth_done = true;
        } else if (rq->auth_st != SB_OK) {
            sb_buf_adds(&err, rq->err.buf);
        }
        if ((st = rq->auth_st) != SB_OK)
            goto out_status;
    }
    /* the policy, early: the owner field (if any) is a path variable */
    st = sb_api_authorize(r, who->present ? who->claims.sub : "", who->present ? who->claims.role : "",
                          "", sb_api_match_request(mt, a), &err);
    if (st != SB_OK)
        goto out_status;
    /* the per-IP limit (login, refresh) is counted in Redis, a blocking
     * call: on a blocking thread, then this runs again from the top */
    if (r->rate_limited) {
        if (!rq->rate_done) {
            offload(rq, rate_limit_job);
            sb_buf_release(&err);
            return 0;
        }
        if ((st = rq->rate_st) != SB_OK) {
            sb_buf_adds(&err, rq->err.buf);
            goto out_status;
        }
    }
    if ((backend = backend_index(sb_api_match_backend(mt))) < 0) {
        /* a row every service serves names its service in the path */
        st = r->backend ? SB_UNIMPLEMENTED : SB_NOT_FOUND;
        if (r->backend)
            sb_buf_addf(&err, "%s: no %s service is configured", key, r->backend);
        else
            sb_buf_addf(&err, "no service named \"%.64s\"", sb_api_match_backend(mt));
        goto out_status;
    }
    const ProtobufCMethodDescriptor *md = r->rpc;
    ProtobufCMessage *msg = NULL;
    if (mt->http->body[0] && !r->raw_body_field) {
        st = sb_json_decode(md->input, rq->body.buf, rq->body.len, a, &msg, &err);
    } else if (r->raw_body_field) {
        /* the body's exact bytes (a signature covers them), not decoded */
        msg = sb_arena_alloc(a, md->input->sizeof_message);
        protobuf_c_message_init(md->input, msg);
        st = set_raw_body(msg, r->raw_body_field, &rq->body, a, &err);
    } else {
        msg = sb_arena_alloc(a, md->input->sizeof_message);
        protobuf_c_message_init(md->input, msg);
        st = SB_OK;
    }
    if (st != SB_OK)
        goto out_status;
    for (size_t i = 0; i < mt->n_vars; i++) {
        st = sb_json_set_field(msg, mt->vars[i].field, mt->vars[i].value, a, &err);
        if (st == SB_NOT_FOUND) {
            st = SB_INTERNAL;
            sb_buf_addf(&err, "%s: %s has no field %s", key, md->input->name, mt->vars[i].field);
        }
        if (st != SB_OK)
            goto out_status;
    }
    struct qctx q = {msg, a, &err, SB_OK};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, on_query, &q);
    if ((st = q.st) != SB_OK)
        goto out_status;
    /* headers that are request fields (Idempotency-Key) */
    for (size_t i = 0; i < r->n_headers; i++) {
        const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, r->headers[i].header);
        if (v && (st = sb_json_set_field(msg, r->headers[i].field, v, a, &err)) != SB_OK)
            goto out_status;
    }
    if (who->present && has_field(msg, "access_token")) {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, "access_token");
        char **slot = (char **)((char *)msg + f->offset);
        if (!*slot || !**slot)
            *slot = sb_arena_strdup(a, who->token);
    }

    rq->backend = backend;
    rq->msg = msg;
    switch (cached_answer(rq, mt, msg, out)) {
    case 1: code = r->ok_status; goto out;
    case -1: /* waits on the fill another request leads */ sb_buf_release(&err); return 0;
    default: break;
    }
    start_call(rq);
    sb_buf_release(&err);
    return 0;

out_status:
    code = status_answer(key, backend, st, &err, out);
out:
    sb_buf_release(&err);
    return code;
}

static bool backend_healthy(size_t b, sb_arena_t *a)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    sb_buf_t err = SB_BUF_INIT;
    sb_call_opts_t o = {.timeout_ms = 1000};
    sb_status_t st =
        sb_rpc_call(sb_channel_get(sb_registry_addr(sb_registry[b].name)),
                    &grpc__health__v1__health__descriptor, "Check", &req.base, a, &resp, &o, &err);
    sb_buf_release(&err);
    return st == SB_OK && ((Grpc__Health__V1__HealthCheckResponse *)resp)->status ==
                              GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
}

/* /readyz: Redis (the token denylist, rate limits) and every backend are
 * required; the answer names each with its state (sb/ready.h). */
static void gateway_ready(void *arg, sb_ready_t *r)
{
    sb_arena_t *a = arg;
    if (atomic_load(&gw.draining)) { /* a load balancer stops sending; nothing else to ask */
        sb_ready_report(r, "gateway", true, false, "draining: shutting down");
        return;
    }
    sb_ready_report(r, "redis", true, sb_redis_ping(gw.redis), "no answer to PING");
    for (size_t b = 0; b < N_BACKENDS; b++)
        sb_ready_report(r, sb_registry[b].name, true, backend_healthy(b, a),
                        "no SERVING answer to grpc.health.v1 Check within 1 s");
}

static void readyz_job(struct req *rq)
{
    sb_buf_reset(&rq->out);
    rq->code = sb_ready_render(gateway_ready, rq->a, &rq->out);
    resume(rq, PH_BODY_ANS);
}

/* The paths served here: the HTTP status with the answer in out, 0 when the
 * path is not one of them, -1 when suspended (/readyz asks Redis and every
 * backend, blocking: on a blocking thread). */
static int builtin(struct req *rq, const char *method, const char *url, sb_buf_t *out,
                   const char **ctype)
{
    if (strcmp(method, "GET") != 0)
        return 0;
    if (!strcmp(url, "/healthz")) {
        sb_buf_adds(out, "{\"status\":\"ok\"}");
        return 200;
    }
    if (!strcmp(url, "/readyz")) {
        offload(rq, readyz_job);
        return -1;
    }
    if (!strcmp(url, "/metrics")) {
        /* where waiting requests are: suspended connections, and how many of
         * them wait on a gRPC call (the rest: a blocking job or a fill) */
        sb_metrics_gauge("sb_gateway_suspended_connections", atomic_load(&loop.suspended));
        sb_metrics_gauge("sb_gateway_rpc_in_flight", (double)sb_rpc_loop_pending(loop.rpc));
        sb_metrics_render(out);
        *ctype = "text/plain; version=0.0.4";
        return 200;
    }
    if (!strcmp(url, "/openapi.json")) {
        gw_openapi(out);
        return 200;
    }
    return 0;
}

/* Every answer leaves here: queues out (handed over) with code, records the
 * metrics and writes the access-log line. */
static enum MHD_Result respond(struct req *rq, const char *method, const char *url, int code,
                               const char *ctype, sb_buf_t *out)
{
    gw_cache_headers_t cache_hdr = {0};
    if (rq->row) /* a routed request: a cached read gets its ETag, or 304 (etag.c) */
        gw_cache_headers(rq->row, method, rq->who.present,
                         MHD_lookup_connection_value(rq->c, MHD_HEADER_KIND, "If-None-Match"), &code,
                         out, &cache_hdr);
    size_t bytes = out->len;
    enum MHD_Result ret = send_body(rq->c, code, ctype, out, rq->trace, &cache_hdr);
    int64_t dt = sb_mono_ns() - rq->t0;
    sb_metrics_rpc(rq->metric_key, code < 400 ? SB_OK : SB_UNKNOWN, dt);
    /* access log: one JSON line per request (the URL path only: query strings may carry tokens) */
    const principal_t *who = &rq->who;
    sb_buf_t f = SB_BUF_INIT;
    sb_buf_adds(&f, "\"method\":");
    sb_buf_add_json_str(&f, method, strnlen(method, 16));
    sb_buf_adds(&f, ",\"path\":");
    sb_buf_add_json_str(&f, url, strnlen(url, 200));
    sb_buf_addf(&f, ",\"status\":%d,\"ms\":%.3f,\"bytes\":%zu,\"ip\":", code, (double)dt / 1e6, bytes);
    sb_buf_add_json_str(&f, rq->ip, strlen(rq->ip));
    sb_buf_adds(&f, ",\"user\":");
    sb_buf_add_json_str(&f, who->present ? who->claims.sub : "",
                        who->present ? strlen(who->claims.sub) : 0);
    sb_log_fields(SB_LOG_INFO, f.buf, "access");
    sb_buf_release(&f);
    return ret;
}

/* The complete request, first seen (PH_NEW) or resumed with an answer:
 * the HTTP status of the answer in out, or 0 when suspended. */
static int handle(struct req *rq, const char *method, const char *url, sb_buf_t *out, const char **ctype)
{
    if (rq->phase == PH_CALL_ANS)
        return call_answer(rq, out);
    if (rq->phase == PH_BODY_ANS) {
        sb_buf_add(out, rq->out.buf, rq->out.len);
        return rq->code;
    }
    if (rq->phase == PH_LEAD) { /* fill_abandoned: this read makes the call now */
        start_call(rq);
        return 0;
    }
    int code = rq->phase == PH_NEW ? builtin(rq, method, url, out, ctype) : 0;
    if (code) {
        rq->metric_key = "builtin";
        return code < 0 ? 0 : code;
    }
    sb_api_match_t mt;
    if (sb_api_match(method, url, &mt)) {
        rq->metric_key = binding_key(&mt);
        return route_request(rq->c, &mt, rq, out);
    }
    if (mt.path_known) {
        sb_buf_addf(out,
                    "{\"error\":{\"code\":\"METHOD_NOT_ALLOWED\",\"message\":\"%s is not allowed on "
                    "this path\"}}",
                    !strcmp(method, "GET") || !strcmp(method, "POST") || !strcmp(method, "PUT") ||
                            !strcmp(method, "DELETE")
                        ? method
                        : "this method");
        return 405;
    }
    return error_body(out, SB_NOT_FOUND, "no such path");
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
        rq->c = c;
        sb_buf_init(&rq->body);
        sb_buf_init(&rq->err);
        sb_buf_init(&rq->out);
        sb_buf_init(&rq->cc.key);
        rq->t0 = sb_mono_ns();
        rq->phase = PH_NEW;
        rq->metric_key = "unrouted";
        *req_cls = rq;
        atomic_fetch_add(&gw.in_flight, 1);
        return MHD_YES;
    }
    if (*upload_size) {
        if (rq->body.len + *upload_size > MAX_BODY)
            rq->too_large = true; /* keep reading (and dropping) so we can answer 413 */
        else
            sb_buf_add(&rq->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (!rq->a) { /* the request is complete: who and which trace */
        const char *trace = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Trace-Id");
        if (sb_log_trace_valid(trace))
            snprintf(rq->trace, sizeof rq->trace, "%s", trace);
        else
            sb_uuid_v4(rq->trace);
        client_ip(c, rq->ip, sizeof rq->ip);
        rq->a = sb_arena_new();
    }
    sb_log_set_trace(rq->trace);
    sb_buf_t out = SB_BUF_INIT;
    const char *ctype = "application/json";
    int code = handle(rq, method, url, &out, &ctype);
    enum MHD_Result ret = MHD_YES;
    if (code) /* else suspended: rq may already be another thread's */
        ret = respond(rq, method, url, code, ctype, &out);
    sb_log_set_trace(NULL);
    sb_buf_release(&out);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    struct req *rq = *req_cls;
    if (rq) {
        if (rq->fill) {
            sb_warn("request %s ended (termination %d, phase %d) while leading a cached read's fill",
                    rq->trace, (int)toe, (int)rq->phase);
            fill_abandoned(rq);
        }
        sb_buf_release(&rq->body);
        sb_buf_release(&rq->err);
        sb_buf_release(&rq->out);
        sb_rpc_cache_call_release(&rq->cc);
        sb_arena_free(rq->a);
        free(rq);
        *req_cls = NULL;
        atomic_fetch_sub(&gw.in_flight, 1);
    }
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    (void)c;
    (void)socket_context;
    atomic_fetch_add(&gw.conns, toe == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1);
}

/* SIGTERM: /readyz answers 503 at once and, for SHUTDOWN_DELAY_MS, requests
 * are still taken (a load balancer notices and stops sending); then the
 * listener closes: connections the kernel already completed are adopted and
 * served rather than reset, new ones are refused; every answer from then on
 * carries Connection: close, so a kept-alive connection closes after the
 * request it brings; the requests in flight finish. When no connection is
 * left, or SHUTDOWN_GRACE_MS has passed, the daemon stops (closing idle
 * connections). Each phase is logged with its counts. */
static void drain(struct MHD_Daemon *d, int sig)
{
    long delay_ms = sb_cfg_int("SHUTDOWN_DELAY_MS", 0, 0, 600000);
    long grace_ms = sb_cfg_int("SHUTDOWN_GRACE_MS", 5000, 0, 600000);
    int64_t t0 = sb_mono_ns();
    atomic_store(&gw.draining, true);
    sb_info("signal %d: draining: /readyz 503; %d connections, %d requests in flight; accepting for "
            "%ld ms more",
            sig, atomic_load(&gw.conns), atomic_load(&gw.in_flight), delay_ms);
    sb_sleep_ms(delay_ms);

    MHD_socket ls = MHD_quiesce_daemon(d);
    int adopted = 0;
    if (ls != MHD_INVALID_SOCKET) {
        int fl = fcntl(ls, F_GETFL);
        if (fl < 0 || fcntl(ls, F_SETFL, fl | O_NONBLOCK) < 0)
            sb_warn("drain: cannot make the listener non-blocking; its backlog is not adopted");
        else
            for (;;) {
                struct sockaddr_storage sa;
                socklen_t n = sizeof sa;
                int fd = accept(ls, (struct sockaddr *)&sa, &n);
                if (fd < 0)
                    break;
                adopted += MHD_add_connection(d, fd, (struct sockaddr *)&sa, n) == MHD_YES;
            }
        /* refuse from now on (a connect fails at once, nothing is sent);
         * the descriptor is closed after MHD_stop_daemon, as MHD asks */
        if (shutdown(ls, SHUT_RDWR) != 0)
            sb_warn("drain: shutdown of the listener failed");
    } else {
        sb_warn("drain: cannot quiesce the HTTP daemon; it stops at the end of the grace period");
    }
    atomic_store(&gw.closing, true);
    sb_info("drain: stopped accepting: %d connections open (%d adopted from the listen backlog), %d "
            "requests in flight; grace %ld ms",
            atomic_load(&gw.conns), adopted, atomic_load(&gw.in_flight), grace_ms);

    int64_t end = sb_mono_ns() + grace_ms * 1000000;
    while (atomic_load(&gw.conns) > 0 && sb_mono_ns() < end)
        sb_sleep_ms(5);
    int left = atomic_load(&gw.conns), busy = atomic_load(&gw.in_flight);
    sb_log(left ? SB_LOG_WARN : SB_LOG_INFO,
           "drain: done after %.0f ms: %ld answers sent with Connection: close; %d connections left "
           "(%d requests in flight), closed now",
           (double)(sb_mono_ns() - t0) / 1e6, atomic_load(&gw.n_closing), left, busy);
    /* a suspended connection must be resumed before the daemon stops: the
     * calls still running are cancelled (answered 503, "shutting down"),
     * the blocking jobs end within their own timeouts */
    sb_rpc_loop_cancel_all(loop.rpc);
    while (atomic_load(&loop.suspended) > 0)
        sb_sleep_ms(2);
    MHD_stop_daemon(d);
    if (ls != MHD_INVALID_SOCKET)
        close(ls);
}

/* The open-file limit, its soft value raised to the hard one (each
 * connection is a descriptor). */
static long raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = was;
    }
    return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1000000 ? 1000000 : (long)rl.rlim_cur;
}

int main(void)
{
    sb_log_init("gateway");
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    sb_buf_t err = SB_BUF_INIT;
    /* the namespace of the run (SB_NAMESPACE, sb/events.h): the denylist
     * marker the gateway asks for is its auth service's (sb/authn.h) */
    const char *ns = sb_cfg_str("SB_NAMESPACE", "");
    if (!sb_namespace_set(ns)) {
        sb_error("SB_NAMESPACE must be up to 16 of [a-z0-9_], not \"%.32s\"", ns);
        return 1;
    }
    gw.redis = sb_redis_new(sb_cfg_str("REDIS_URL", "redis://127.0.0.1:6379"), &err);
    if (!gw.redis) {
        sb_error("%s", err.buf);
        return 1;
    }
    gw.authn = sb_authn_from_env(gw.redis, &err);
    if (!gw.authn) {
        sb_error("%s", err.buf);
        sb_redis_free(gw.redis);
        return 1;
    }
    gw.timeout_ms = sb_cfg_int("GATEWAY_TIMEOUT_MS", 5000, 100, 120000);
    trust_forwarded = sb_cfg_bool("GATEWAY_TRUST_FORWARDED", false);
    gw.login_limit = sb_cfg_int("LOGIN_RATE_LIMIT", 20, 1, 1000000);
    gw.key_at = sb_calloc(sb_api_n_methods, sizeof *gw.key_at);
    for (size_t i = 0; i < sb_api_n_methods; i++) {
        gw.key_at[i] = gw.n_keys;
        gw.n_keys += sb_api_methods[i].n_http;
    }
    gw.keys = sb_calloc(gw.n_keys ? gw.n_keys : 1, sizeof *gw.keys);
    for (size_t i = 0; i < sb_api_n_methods; i++)
        for (size_t h = 0; h < sb_api_methods[i].n_http; h++) {
            sb_buf_t k = SB_BUF_INIT;
            sb_buf_addf(&k, "%s ", sb_api_methods[i].http[h].verb);
            gw_client_path(sb_api_methods[i].http[h].path, &k);
            gw.keys[gw.key_at[i] + h] = sb_buf_detach(&k, NULL);
        }
    long port = sb_cfg_int("GATEWAY_PORT", 8080, 1, 65535);
    /* an epoll event loop per core (GATEWAY_THREADS, 0: one per core), each
     * serving its share of the connections; a request waiting on its call is
     * a suspended connection, not a thread (docs/benchmarks.md, "Event
     * loops"). The completions come back on GATEWAY_RPC_THREADS threads. */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    long threads = sb_cfg_int("GATEWAY_THREADS", 0, 0, 1024);
    if (threads == 0)
        threads = ncpu > 0 ? ncpu : 1;
    long max_conns = sb_cfg_int("GATEWAY_MAX_CONNECTIONS", 16384, 1, 1000000);
    long nofile = raise_nofile();
    if (max_conns > nofile - 256) {
        sb_warn("GATEWAY_MAX_CONNECTIONS %ld is over the open-file limit %ld less 256: %ld connections",
                max_conns, nofile, nofile - 256 > 1 ? nofile - 256 : 1);
        max_conns = nofile - 256 > 1 ? nofile - 256 : 1;
    }
    /* what one connection may hold: its request line and headers, the
     * response's headers (bodies live outside, in struct req and the
     * response). libmicrohttpd zeroes the whole of it between two requests,
     * so it is both the resident memory of an idle connection and a memset
     * per request: 16 KiB (docs/benchmarks.md, "Event loops"). */
    long conn_mem = sb_cfg_int("GATEWAY_CONNECTION_MEMORY", 16 * 1024, 8 * 1024, 1024 * 1024);
    loop.rpc = sb_rpc_loop_new((int)sb_cfg_int("GATEWAY_RPC_THREADS", 1, 1, 64));
    jobs_start(sb_cfg_int("GATEWAY_BLOCKING_THREADS", 2, 1, 64));
    /* MHD_USE_ITC: MHD_quiesce_daemon and MHD_add_connection (the drain) and
     * MHD_resume_connection from other threads need it */
    unsigned flags = MHD_USE_ERROR_LOG | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_EPOLL |
                     MHD_ALLOW_SUSPEND_RESUME;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_request, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        NULL, MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)max_conns, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)sb_cfg_int("GATEWAY_IDLE_TIMEOUT_S", 30, 1, 86400), MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)conn_mem, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)threads, MHD_OPTION_END);
    if (!d) {
        sb_error("cannot listen on port %ld", port);
        return 1;
    }
    sb_info("gateway listening on http://0.0.0.0:%ld: %ld event loops, up to %ld connections "
            "(%ld KiB each)",
            port, threads, max_conns, conn_mem / 1024);
    int sig;
    sigwait(&stop, &sig);
    drain(d, sig);
    jobs_stop();
    sb_rpc_loop_free(loop.rpc);
    sb_authn_free(gw.authn);
    sb_redis_free(gw.redis);
    sb_channels_free_all();
    for (size_t i = 0; i < gw.n_keys; i++)
        free(gw.keys[i]);
    free(gw.keys);
    free(gw.key_at);
    sb_buf_release(&err);
    return 0;
}
