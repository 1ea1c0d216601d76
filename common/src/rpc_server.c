/* gRPC server on the core C API. See sb/rpc.h for the model.
 *
 * Threads: an acceptor keeps a backlog of grpc_server_request_call slots
 * posted on the one completion queue registered with the server; each call
 * it gets goes, with its own completion queue, onto the server's queue of
 * calls waiting for a worker. A worker takes the oldest and handles it
 * synchronously (request -> handler -> answer), so handlers may block on the
 * database; concurrency is the number of workers (GRPC_WORKERS).
 *
 * Why the queue is ours and not gRPC's: a call gRPC holds because no
 * request_call is posted is cancelled by grpc_server_shutdown_and_notify
 * (its client reads CANCELLED: HTTP 499 at the gateway), while a call handed
 * to us is waited for. So every call that arrived before SIGTERM is ours,
 * and sb_server_shutdown can drain the queue within the grace period and
 * answer what is left UNAVAILABLE "shutting down" (a retryable 503).
 *
 * dispatch() is the one path of a call: find the row, unpack the request,
 * run the row, answer for an internal failure (answer_internal), pack. The
 * row's flags (transaction, idempotency) are the runner's business: a hook
 * the service layer installs per service (sb_server_add_service_run), not
 * code here, so this file needs no database, a bare server (the tests', the
 * health service) runs handlers directly, and the one place that turns an
 * internal failure into what a client reads stays here, where every call
 * passes whatever runs it. */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "health.pb-c.h"
#include "sb/alloc.h"
#include "sb/api.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/rpc.h"
#include "sb/rpc_cache.h"
#include "sb/tls.h"
#include "sb/util.h"

struct route {
    char *path; /* "/pkg.Service/Method" */
    const ProtobufCMethodDescriptor *md;
    sb_rpc_method_t row; /* row.fn NULL: UNIMPLEMENTED */
    sb_rpc_run_fn run;   /* NULL: row.fn is called directly */
    void *service_data;
    const sb_api_method_t *api; /* the method's row in the API table */
    bool policed;               /* check api's access policy before the handler */
};

/* One posted grpc_server_request_call, then the call it got, waiting in
 * the server's queue for a worker. */
struct slot {
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_completion_queue *cq; /* the call's own: its batches complete here */
    struct slot *next;
};

struct sb_server {
    char *addr;
    int port;
    grpc_server *server;
    grpc_completion_queue *shutdown_cq;
    grpc_completion_queue *accept_cq; /* request_call notifications (registered) */
    pthread_t acceptor;
    pthread_t *workers;
    int n_workers;
    int backlog; /* request_call slots kept posted */
    /* the calls waiting for a worker; mu guards the queue and the counts */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct slot *head, *tail;
    int queued, running;
    bool closed;   /* the acceptor is done: workers leave when the queue is empty */
    bool refusing; /* the grace period is over: queued calls are answered UNAVAILABLE */
    long n_finished, n_refused;
    struct route *routes;
    size_t n_routes;
    atomic_bool serving;
    bool started;
    sb_rpc_authn_fn authn; /* verifies bearer tokens; NULL: calls are anonymous */
    void *authn_arg;
};

static sb_status_t health_check(sb_rpc_ctx_t *ctx, const void *in, void *out);
static const sb_rpc_method_t health_methods[] = {{"Check", health_check}};

sb_status_t sb_rpc_fail(sb_rpc_ctx_t *ctx, sb_status_t st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_buf_reset(&ctx->err);
    sb_buf_vaddf(&ctx->err, fmt, ap);
    va_end(ap);
    sb_log(st == SB_INTERNAL || st == SB_UNAVAILABLE ? SB_LOG_ERROR : SB_LOG_INFO, "%s -> %s: %s",
           ctx->method, sb_status_name(st), ctx->err.buf);
    return st;
}

sb_status_t sb_rpc_page(sb_rpc_ctx_t *ctx, int32_t page_size, const char *token, int def, int max,
                        sb_page_t *p)
{
    const char *bad = sb_page_request(ctx->arena, page_size, token, def, max, p);
    return bad ? sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "%s", bad) : SB_OK;
}

sb_status_t sb_rpc_error(sb_rpc_ctx_t *ctx, sb_status_t st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (ctx->detail.len)
        sb_buf_adds(&ctx->detail, "; ");
    sb_buf_vaddf(&ctx->detail, fmt, ap);
    va_end(ap);
    return st;
}

/* The last part of the package of "/sb.member.MemberService/X" ("member"),
 * as *name and *n; "the" when the path has no package. */
static void package_tail(const char *method, const char **name, int *n)
{
    const char *svc = method + (*method == '/');
    const char *end = strchr(svc, '/');
    if (!end)
        end = svc + strlen(svc);
    const char *dot = end; /* the dot before "MemberService" */
    while (dot > svc && *dot != '.')
        dot--;
    const char *start = dot;
    while (start > svc && start[-1] != '.')
        start--;
    *name = dot > start ? start : "the";
    *n = dot > start ? (int)(dot - start) : 3;
}

/* The one place an internal failure (a non-OK status without a refusal
 * message) becomes what the client reads; logged once, with the detail. */
static sb_status_t answer_internal(sb_rpc_ctx_t *ctx, sb_status_t st)
{
    sb_error("%s failed (%s): %s", ctx->method, sb_status_name(st),
             ctx->detail.len ? ctx->detail.buf : "no detail");
    if (st == SB_UNAVAILABLE || st == SB_ABORTED || st == SB_DEADLINE_EXCEEDED) {
        const char *name;
        int n;
        package_tail(ctx->method, &name, &n);
        sb_buf_addf(&ctx->err, "%.*s service unavailable; try again", n, name);
        return st;
    }
    sb_buf_adds(&ctx->err, "internal error");
    return SB_INTERNAL;
}

int64_t sb_rpc_remaining_ms(const sb_rpc_ctx_t *ctx)
{
    if (ctx->deadline_ms == INT64_MAX)
        return INT64_MAX;
    return ctx->deadline_ms - sb_now_ms();
}

sb_server_t *sb_server_new(const char *addr, int workers)
{
    grpc_init();
    sb_server_t *s = sb_calloc(1, sizeof *s);
    s->addr = sb_strdup(addr);
    s->n_workers = workers > 0 ? workers : 4;
    /* enough posted slots that a burst lands in our queue, not gRPC's */
    s->backlog = s->n_workers * 4 > 32 ? s->n_workers * 4 : 32;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    atomic_init(&s->serving, true);
    sb_server_add_service(s, &grpc__health__v1__health__descriptor, health_methods, 1, s);
    return s;
}

/* Every method of a service the API table knows is policed (a method of it
 * without a row would be refused: deny by default; the unit test keeps that
 * from happening). Services the table does not know are not the platform's
 * contract: grpc.health (the runtime's own, open to all) and test fixtures. */
static bool known_service(const ProtobufCServiceDescriptor *desc)
{
    for (size_t i = 0; i < sb_api_n_methods; i++)
        if (!strcmp(sb_api_methods[i].service->name, desc->name))
            return true;
    return false;
}

void sb_server_add_service(sb_server_t *s, const ProtobufCServiceDescriptor *desc,
                           const sb_rpc_method_t *methods, size_t n_methods, void *service_data)
{
    sb_server_add_service_run(s, desc, methods, n_methods, service_data, NULL);
}

void sb_server_add_service_run(sb_server_t *s, const ProtobufCServiceDescriptor *desc,
                               const sb_rpc_method_t *methods, size_t n_methods, void *service_data,
                               sb_rpc_run_fn run)
{
    s->routes = sb_realloc(s->routes, (s->n_routes + desc->n_methods) * sizeof *s->routes);
    for (unsigned i = 0; i < desc->n_methods; i++) {
        struct route *r = &s->routes[s->n_routes++];
        sb_buf_t p = SB_BUF_INIT;
        sb_buf_addf(&p, "/%s/%s", desc->name, desc->methods[i].name);
        r->path = sb_buf_detach(&p, NULL);
        r->md = &desc->methods[i];
        r->row = (sb_rpc_method_t){.name = desc->methods[i].name};
        r->run = run;
        r->service_data = service_data;
        r->api = sb_api_find_path(r->path);
        r->policed = r->api || known_service(desc);
        for (size_t j = 0; j < n_methods; j++)
            if (strcmp(methods[j].name, desc->methods[i].name) == 0)
                r->row = methods[j];
    }
    for (size_t j = 0; j < n_methods; j++)
        if (!protobuf_c_service_descriptor_get_method_by_name(desc, methods[j].name))
            sb_warn("handler %s is not a method of %s; ignored", methods[j].name, desc->name);
}

static const struct route *find_route(const sb_server_t *s, grpc_slice method)
{
    size_t n = GRPC_SLICE_LENGTH(method);
    const char *p = (const char *)GRPC_SLICE_START_PTR(method);
    for (size_t i = 0; i < s->n_routes; i++)
        if (strlen(s->routes[i].path) == n && memcmp(s->routes[i].path, p, n) == 0)
            return &s->routes[i];
    return NULL;
}

/* The value of metadata key, copied into a; NULL when absent. *too_long is
 * set (and NULL returned) when the value exceeds max bytes. */
static const char *md_get(sb_arena_t *a, const grpc_metadata_array *md, const char *key, size_t max,
                          bool *too_long)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < md->count; i++) {
        grpc_slice k = md->metadata[i].key;
        if (GRPC_SLICE_LENGTH(k) == klen && memcmp(GRPC_SLICE_START_PTR(k), key, klen) == 0) {
            grpc_slice v = md->metadata[i].value;
            size_t vlen = GRPC_SLICE_LENGTH(v);
            if (vlen > max) {
                if (too_long)
                    *too_long = true;
                return NULL;
            }
            return sb_arena_strndup(a, (const char *)GRPC_SLICE_START_PTR(v), vlen);
        }
    }
    return NULL;
}

/* Who is calling, from proof only: the calling service from the verified TLS
 * client certificate, the end user from the verified bearer token. Anything
 * else a caller writes in metadata about itself is never read. OK with the
 * identity in ctx (anonymous when no token was sent); UNAUTHENTICATED when a
 * token was sent and does not verify; UNAVAILABLE when revocation cannot be
 * checked. The refusal message is in ctx->err. */
/* "ipv4:127.0.0.1:5555" / "ipv6:[::1]:5555" -> the host part. */
static const char *peer_host(grpc_call *call, sb_arena_t *a)
{
    char *peer = grpc_call_get_peer(call);
    const char *p = peer ? peer : "unknown";
    if (!strncmp(p, "ipv4:", 5) || !strncmp(p, "ipv6:", 5))
        p += 5;
    size_t n = strlen(p);
    const char *colon = strrchr(p, ':');
    if (colon && (p[0] != '[' || colon > strchr(p, ']')))
        n = (size_t)(colon - p);
    if (p[0] == '[' && n >= 2 && p[n - 1] == ']') {
        p++;
        n -= 2;
    }
    char *host = sb_arena_strndup(a, p, n > 64 ? 64 : n);
    gpr_free(peer);
    return host;
}

/* An address the edge reports: digits, hex, '.', ':' only. */
static bool valid_ip(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 45)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdefABCDEF.:", s[i]))
            return false;
    return true;
}

static sb_status_t authenticate(sb_server_t *s, grpc_call *call, const grpc_metadata_array *md,
                                sb_rpc_ctx_t *ctx)
{
    const char *peer = sb_tls_peer_service(call, ctx->arena);
    ctx->caller_service = peer ? peer : "";
    const char *edge_ip = !strcmp(ctx->caller_service, SB_EDGE_SERVICE)
                              ? md_get(ctx->arena, md, SB_MD_CLIENT_IP, 45, NULL)
                              : NULL;
    ctx->client_ip = valid_ip(edge_ip) ? edge_ip : peer_host(call, ctx->arena);
    ctx->user_id = ctx->user_role = ctx->token = "";
    bool too_long = false;
    const char *h = md_get(ctx->arena, md, SB_MD_AUTHORIZATION, SB_JWT_MAX_TOKEN + 7, &too_long);
    if (too_long)
        return sb_rpc_fail(ctx, SB_UNAUTHENTICATED, "token too long");
    if (!h)
        return SB_OK;
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return sb_rpc_fail(ctx, SB_UNAUTHENTICATED, "authorization must be a Bearer token");
    if (!s->authn)
        return sb_rpc_fail(ctx, SB_UNAUTHENTICATED, "this server accepts no tokens");
    sb_jwt_claims_t c;
    sb_buf_t why = SB_BUF_INIT;
    sb_status_t st = s->authn(s->authn_arg, h + 7, &c, &why);
    if (st != SB_OK) {
        st = sb_rpc_fail(ctx, st == SB_UNAVAILABLE ? SB_UNAVAILABLE : SB_UNAUTHENTICATED, "%s", why.buf);
        sb_buf_release(&why);
        return st;
    }
    sb_buf_release(&why);
    ctx->user_id = sb_arena_strdup(ctx->arena, c.sub);
    ctx->user_role = sb_arena_strdup(ctx->arena, c.role);
    ctx->token = h + 7;
    return SB_OK;
}

static bool wait_op(grpc_completion_queue *cq, void *tag)
{
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type != GRPC_OP_COMPLETE || ev.tag != tag) {
        sb_error("grpc: unexpected completion type=%d", (int)ev.type);
        return false;
    }
    return ev.success != 0;
}

static int64_t deadline_to_ms(gpr_timespec d)
{
    if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0)
        return INT64_MAX;
    gpr_timespec r = gpr_convert_clock_type(d, GPR_CLOCK_REALTIME);
    return (int64_t)r.tv_sec * 1000 + r.tv_nsec / 1000000;
}

/* Runs the row for one request payload; fills *out_bytes on OK. */
static sb_status_t dispatch(const struct route *r, sb_rpc_ctx_t *ctx, const uint8_t *data, size_t len,
                            sb_buf_t *out_bytes)
{
    if (!r)
        return sb_rpc_fail(ctx, SB_UNIMPLEMENTED, "unknown method %s", ctx->method);
    if (!r->row.fn)
        return sb_rpc_fail(ctx, SB_UNIMPLEMENTED, "%s has no handler in this server", ctx->method);
    ProtobufCMessage *req =
        protobuf_c_message_unpack(r->md->input, sb_arena_pb_allocator(ctx->arena), len, data);
    if (!req)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "malformed %s request payload (%zu bytes)",
                           r->md->input->name, len);
    if (r->policed) {
        sb_buf_t why = SB_BUF_INIT;
        sb_status_t st =
            sb_api_authorize(r->api, ctx->user_id, ctx->user_role, ctx->caller_service, req, &why);
        if (st != SB_OK)
            st = sb_rpc_fail(ctx, st, "%s", why.buf);
        sb_buf_release(&why);
        if (st != SB_OK)
            return st;
    }
    ctx->service_data = r->service_data;
    ctx->row = &r->row;
    ctx->api = r->api;
    /* a read declared cached may be answered from memory (sb/rpc_cache.h) */
    sb_rpc_cache_call_t cc;
    if (sb_rpc_cache_lookup(&cc, r->api, ctx, req, data, len, out_bytes)) {
        ctx->cache_ttl_ms = cc.ttl_ms;
        sb_rpc_cache_call_release(&cc);
        return SB_OK;
    }

    ProtobufCMessage *resp = sb_arena_alloc(ctx->arena, r->md->output->sizeof_message);
    protobuf_c_message_init(r->md->output, resp);
    sb_status_t st = r->run ? r->run(ctx, &r->row, req, resp) : r->row.fn(ctx, req, resp);
    /* committed or refused: the answers this call may have changed go */
    sb_rpc_cache_after_call(r->api, req);
    if (st != SB_OK) {
        sb_rpc_cache_call_release(&cc);
        return ctx->err.len ? st : answer_internal(ctx, st);
    }

    size_t n = protobuf_c_message_get_packed_size(resp);
    sb_buf_grow(out_bytes, n);
    protobuf_c_message_pack(resp, (uint8_t *)out_bytes->buf);
    out_bytes->len = n;
    sb_rpc_cache_store(&cc, out_bytes->buf, n, -1);
    sb_rpc_cache_call_release(&cc);
    return SB_OK;
}

static void handle_call(sb_server_t *s, grpc_completion_queue *cq, grpc_call *call,
                        grpc_call_details *details, grpc_metadata_array *md)
{
    int64_t t0 = sb_mono_ns();
    sb_rpc_ctx_t ctx = {.arena = sb_arena_new(), .err = SB_BUF_INIT, .detail = SB_BUF_INIT};
    sb_buf_t out = SB_BUF_INIT;
    const struct route *r = find_route(s, details->method);
    ctx.method = r ? r->path
                   : sb_arena_strndup(ctx.arena, (const char *)GRPC_SLICE_START_PTR(details->method),
                                      GRPC_SLICE_LENGTH(details->method) > 200
                                          ? 200
                                          : GRPC_SLICE_LENGTH(details->method));
    ctx.deadline_ms = deadline_to_ms(details->deadline);
    const char *trace = md_get(ctx.arena, md, SB_MD_TRACE_ID, 64, NULL);
    if (!trace || !*trace) {
        char *t = sb_arena_alloc(ctx.arena, SB_UUID_LEN + 1);
        sb_uuid_v4(t);
        trace = t;
    }
    ctx.trace_id = trace;
    sb_log_set_trace(trace);
    sb_status_t who = authenticate(s, call, md, &ctx);

    /* 1: receive the request message */
    grpc_byte_buffer *payload = NULL;
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
    op.data.recv_message.recv_message = &payload;
    sb_status_t st;
    if (grpc_call_start_batch(call, &op, 1, &op, NULL) != GRPC_CALL_OK || !wait_op(cq, &op)) {
        st = sb_rpc_fail(&ctx, SB_CANCELLED, "call ended before its request arrived");
        goto out_answer;
    }
    if (!payload) {
        st = sb_rpc_fail(&ctx, SB_INVALID_ARGUMENT, "no request message");
        goto out_answer;
    }
    if (sb_rpc_remaining_ms(&ctx) <= 0) {
        st = sb_rpc_fail(&ctx, SB_DEADLINE_EXCEEDED, "deadline passed before handling");
        goto out_free_payload;
    }
    if ((st = who) != SB_OK) /* a token that does not verify: no handler runs */
        goto out_free_payload;
    {
        grpc_byte_buffer_reader reader;
        if (!grpc_byte_buffer_reader_init(&reader, payload)) {
            st = sb_rpc_fail(&ctx, SB_INVALID_ARGUMENT, "undecodable request payload");
            goto out_free_payload;
        }
        grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
        st = dispatch(r, &ctx, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all), &out);
        grpc_slice_unref(all);
    }

out_free_payload:
    grpc_byte_buffer_destroy(payload);
out_answer : {
    /* 2: answer: initial metadata, message (if OK), status; wait for close */
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    /* an answer out of the cache says how long it stays fresh (SB_MD_CACHE_TTL) */
    char ttl[24];
    grpc_metadata ttl_md = {.key = grpc_slice_from_static_string(SB_MD_CACHE_TTL)};
    if (st == SB_OK && ctx.cache_ttl_ms > 0) {
        snprintf(ttl, sizeof ttl, "%lld", (long long)ctx.cache_ttl_ms);
        ttl_md.value = grpc_slice_from_static_string(ttl);
        ops[n].data.send_initial_metadata.count = 1;
        ops[n].data.send_initial_metadata.metadata = &ttl_md;
    }
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    grpc_byte_buffer *resp_bb = NULL;
    if (st == SB_OK) {
        grpc_slice sl = grpc_slice_from_copied_buffer(out.buf, out.len);
        resp_bb = grpc_raw_byte_buffer_create(&sl, 1);
        grpc_slice_unref(sl);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = resp_bb;
    }
    grpc_slice details_slice = grpc_slice_from_copied_buffer(ctx.err.buf, ctx.err.len);
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)st;
    ops[n++].data.send_status_from_server.status_details = st == SB_OK ? NULL : &details_slice;
    int cancelled = 0;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &cancelled;
    if (grpc_call_start_batch(call, ops, n, ops, NULL) == GRPC_CALL_OK)
        wait_op(cq, ops);
    else
        sb_error("grpc: could not send the answer of %s", ctx.method);
    grpc_slice_unref(details_slice);
    if (resp_bb)
        grpc_byte_buffer_destroy(resp_bb);
}
    sb_metrics_rpc(r ? r->path : "unknown", st, sb_mono_ns() - t0);
    sb_debug("%s -> %s in %.3f ms", ctx.method, sb_status_name(st), (double)(sb_mono_ns() - t0) / 1e6);
    sb_log_set_trace(NULL);
    sb_buf_release(&out);
    sb_buf_release(&ctx.err);
    sb_buf_release(&ctx.detail);
    sb_arena_free(ctx.arena);
}

static void drain_and_destroy(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
    }
    grpc_completion_queue_destroy(cq);
}

/* Sends status st with message msg on a call whose request was never read
 * (a refusal before any worker touched it). */
static void answer_status(grpc_completion_queue *cq, grpc_call *call, sb_status_t st, const char *msg)
{
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    grpc_slice details = grpc_slice_from_copied_string(msg);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[1].data.send_status_from_server.status = (grpc_status_code)st;
    ops[1].data.send_status_from_server.status_details = &details;
    int cancelled = 0;
    ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[2].data.recv_close_on_server.cancelled = &cancelled;
    if (grpc_call_start_batch(call, ops, 3, ops, NULL) == GRPC_CALL_OK)
        wait_op(cq, ops);
    grpc_slice_unref(details);
}

static void slot_free(struct slot *sl)
{
    if (sl->call)
        grpc_call_unref(sl->call);
    grpc_call_details_destroy(&sl->details);
    grpc_metadata_array_destroy(&sl->md);
    drain_and_destroy(sl->cq);
    free(sl);
}

/* Posts one request_call slot; false when the server refuses it. */
static bool post_slot(sb_server_t *s)
{
    struct slot *sl = sb_calloc(1, sizeof *sl);
    grpc_call_details_init(&sl->details);
    grpc_metadata_array_init(&sl->md);
    sl->cq = grpc_completion_queue_create_for_next(NULL);
    if (grpc_server_request_call(s->server, &sl->call, &sl->details, &sl->md, sl->cq, s->accept_cq,
                                 sl) != GRPC_CALL_OK) {
        slot_free(sl);
        return false;
    }
    return true;
}

/* Moves every call gRPC hands over onto the queue and posts a slot in its
 * place, until shutdown fails the posted slots. */
static void *acceptor_main(void *arg)
{
    sb_server_t *s = arg;
    int posted = 0;
    for (int i = 0; i < s->backlog; i++)
        posted += post_slot(s);
    while (posted > 0) {
        grpc_event ev =
            grpc_completion_queue_next(s->accept_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            break;
        struct slot *sl = ev.tag;
        posted--;
        if (!ev.success) { /* the server is shutting down */
            slot_free(sl);
            continue;
        }
        pthread_mutex_lock(&s->mu);
        if (s->tail)
            s->tail->next = sl;
        else
            s->head = sl;
        s->tail = sl;
        s->queued++;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->mu);
        posted += post_slot(s);
    }
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* The oldest queued call, or NULL when the queue is empty (and, with wait,
 * the acceptor is done). Called with s->mu held. */
static struct slot *dequeue(sb_server_t *s, bool wait)
{
    while (wait && !s->head && !s->closed)
        pthread_cond_wait(&s->cond, &s->mu);
    struct slot *sl = s->head;
    if (sl) {
        s->head = sl->next;
        if (!s->head)
            s->tail = NULL;
        s->queued--;
    }
    return sl;
}

static void *worker_main(void *arg)
{
    sb_server_t *s = arg;
    pthread_mutex_lock(&s->mu);
    struct slot *sl;
    while ((sl = dequeue(s, true))) {
        bool refuse = s->refusing;
        if (refuse)
            s->n_refused++;
        else
            s->running++;
        pthread_mutex_unlock(&s->mu);
        if (refuse)
            answer_status(sl->cq, sl->call, SB_UNAVAILABLE, "shutting down; try again");
        else
            handle_call(s, sl->cq, sl->call, &sl->details, &sl->md);
        slot_free(sl);
        pthread_mutex_lock(&s->mu);
        if (!refuse) {
            s->running--;
            s->n_finished++;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

sb_status_t sb_server_start(sb_server_t *s, sb_buf_t *err)
{
    s->server = grpc_server_create(NULL, NULL);
    s->accept_cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->accept_cq, NULL);
    s->shutdown_cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_server_credentials *creds = sb_tls_server_creds(err); /* TLS unless GRPC_INSECURE */
    if (!creds)
        return SB_UNAVAILABLE;
    s->port = grpc_server_add_http2_port(s->server, s->addr, creds);
    grpc_server_credentials_release(creds);
    if (s->port <= 0) {
        sb_buf_addf(err, "cannot listen on %s", s->addr);
        return SB_UNAVAILABLE;
    }
    grpc_server_start(s->server);
    s->workers = sb_calloc((size_t)s->n_workers, sizeof *s->workers);
    pthread_create(&s->acceptor, NULL, acceptor_main, s);
    for (int i = 0; i < s->n_workers; i++)
        pthread_create(&s->workers[i], NULL, worker_main, s);
    s->started = true;
    sb_info("gRPC server listening on %s (port %d, %d workers, %s)", s->addr, s->port, s->n_workers,
            sb_tls_insecure() ? "plaintext" : "TLS");
    return SB_OK;
}

int sb_server_port(const sb_server_t *s)
{
    return s->port;
}

void sb_server_set_authenticator(sb_server_t *s, sb_rpc_authn_fn fn, void *arg)
{
    s->authn = fn;
    s->authn_arg = arg;
}

void sb_server_set_serving(sb_server_t *s, bool serving)
{
    atomic_store(&s->serving, serving);
}

bool sb_server_serving(const sb_server_t *s)
{
    return atomic_load(&s->serving);
}

/* The drain (docs/internals.md, "Graceful drain"): gRPC stops listening,
 * sends GOAWAY and fails the posted slots, so nothing new reaches the queue;
 * the workers finish the running calls and work through the queued ones.
 * When the grace period is over, what is still queued is answered
 * UNAVAILABLE (never started, safe to retry); calls still running after it
 * are cancelled (their clients read CANCELLED, which sb_rpc_call turns into
 * UNAVAILABLE). */
void sb_server_shutdown(sb_server_t *s, int grace_ms)
{
    if (!s->started)
        return;
    atomic_store(&s->serving, false);
    int64_t t0 = sb_mono_ns();
    pthread_mutex_lock(&s->mu);
    long finished0 = s->n_finished;
    sb_info("gRPC server on %s draining: %d calls running, %d queued; grace %d ms", s->addr, s->running,
            s->queued, grace_ms);
    pthread_mutex_unlock(&s->mu);
    int tag;
    grpc_server_shutdown_and_notify(s->server, s->shutdown_cq, &tag);
    grpc_event ev = grpc_completion_queue_pluck(
        s->shutdown_cq, &tag,
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(grace_ms, GPR_TIMESPAN)), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        /* answer the queue here rather than wait for a worker to come free */
        pthread_mutex_lock(&s->mu);
        s->refusing = true;
        int running = s->running;
        struct slot *sl;
        while ((sl = dequeue(s, false))) {
            s->n_refused++;
            pthread_mutex_unlock(&s->mu);
            answer_status(sl->cq, sl->call, SB_UNAVAILABLE, "shutting down; try again");
            slot_free(sl);
            pthread_mutex_lock(&s->mu);
        }
        if (s->n_refused || running)
            sb_warn("gRPC server on %s: grace of %d ms over: %ld queued calls answered UNAVAILABLE, "
                    "%d running calls cancelled",
                    s->addr, grace_ms, s->n_refused, running);
        pthread_mutex_unlock(&s->mu);
        grpc_server_cancel_all_calls(s->server);
        grpc_completion_queue_pluck(s->shutdown_cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    }
    pthread_join(s->acceptor, NULL);
    for (int i = 0; i < s->n_workers; i++)
        pthread_join(s->workers[i], NULL);
    s->started = false;
    sb_info("gRPC server on %s stopped after %.0f ms: %ld calls finished during the drain, %ld "
            "refused UNAVAILABLE",
            s->addr, (double)(sb_mono_ns() - t0) / 1e6, s->n_finished - finished0, s->n_refused);
}

void sb_server_free(sb_server_t *s)
{
    if (!s)
        return;
    sb_server_shutdown(s, 0);
    if (s->server)
        grpc_server_destroy(s->server);
    if (s->accept_cq)
        drain_and_destroy(s->accept_cq);
    if (s->shutdown_cq) {
        grpc_completion_queue_shutdown(s->shutdown_cq);
        grpc_completion_queue_pluck(s->shutdown_cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        grpc_completion_queue_destroy(s->shutdown_cq);
    }
    for (size_t i = 0; i < s->n_routes; i++)
        free(s->routes[i].path);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s->routes);
    free(s->workers);
    free(s->addr);
    free(s);
    grpc_shutdown();
}

/* grpc.health.v1.Health/Check: "" is the whole server; a registered service
 * name answers for that service; anything else is NOT_FOUND (the standard). */
static sb_status_t health_check(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Grpc__Health__V1__HealthCheckRequest *req = in;
    Grpc__Health__V1__HealthCheckResponse *resp = out;
    sb_server_t *s = ctx->service_data;
    bool known = !req->service || !*req->service;
    for (size_t i = 0; !known && i < s->n_routes; i++) {
        size_t n = strlen(req->service);
        known = strncmp(s->routes[i].path + 1, req->service, n) == 0 && s->routes[i].path[n + 1] == '/';
    }
    if (!known)
        return sb_rpc_fail(ctx, SB_NOT_FOUND, "unknown service %.100s", req->service);
    resp->status = atomic_load(&s->serving)
                       ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                       : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    return SB_OK;
}
