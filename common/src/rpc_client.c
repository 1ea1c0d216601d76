/* gRPC unary client: one cached channel per (target, expected server name),
 * over TLS (sb/tls.h); each call uses its own pluck completion queue so
 * callers on any thread can block on it.
 *
 * Calls are fail-fast (no wait_for_ready): while a channel cannot connect
 * (TRANSIENT_FAILURE) a call fails at once with UNAVAILABLE, which the
 * gateway answers 503 with its JSON body. The channel keeps reconnecting on
 * its own with a backoff capped by RECONNECT_MAX_MS (gRPC's default grows to
 * 120 s, so a backend back after a long outage was not used for up to two
 * minutes); see docs/internals.md, "Reconnect backoff". */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sb/alloc.h"
#include "sb/config.h"
#include "sb/log.h"
#include "sb/registry.h"
#include "sb/rpc.h"
#include "sb/tls.h"

struct sb_channel {
    struct sb_channel *next;
    char *target;
    char *service;    /* the name the server's certificate must carry; NULL: the target's host */
    char *cert, *key; /* the certificate presented; NULL: this process's (TLS_CERT_FILE) */
    grpc_channel *ch;
};

static pthread_mutex_t channels_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sb_channel *channels;

/* The gRPC core does its I/O on the threads that wait on a completion queue.
 * A fail-fast call to a channel in TRANSIENT_FAILURE fails at once, so while
 * a backend is down no caller waits long enough to carry the channel's next
 * connection attempt (TCP connect, TLS handshake) through: the attempt timed
 * out half done until gRPC's backup poller (every 5 s) happened to move it,
 * and a backend back after an outage was not used for seconds more. One
 * thread per process waits on an idle queue for as long as channels exist,
 * so reconnection proceeds on its own, whoever is calling. */
static grpc_completion_queue *poller_cq;
static pthread_t poller;

static void *poller_main(void *arg)
{
    (void)arg;
    while (grpc_completion_queue_next(poller_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    return NULL;
}

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* A new channel to target over sb_tls_channel_creds (or presenting cert/key
 * when given); with TLS, the server's certificate must name `service` (when
 * given). A TLS misconfiguration gives a lame channel: every call fails
 * UNAVAILABLE with the reason. */
static grpc_channel *channel_new(const char *target, const char *service, const char *cert,
                                 const char *key)
{
    sb_buf_t err = SB_BUF_INIT;
    grpc_channel *ch;
    grpc_channel_credentials *creds =
        cert ? sb_tls_channel_creds_as(cert, key, &err) : sb_tls_channel_creds(&err);
    if (!creds) {
        sb_error("grpc channel to %s: %s", target, err.buf);
        ch = grpc_lame_client_channel_create(target, GRPC_STATUS_UNAVAILABLE, "TLS is misconfigured");
        sb_buf_release(&err);
        return ch;
    }
    /* the reconnect backoff: first retry after RECONNECT_INITIAL_MS, growing
     * 1.6x (jitter 20%) to at most RECONNECT_MAX_MS; one connect attempt
     * (TCP + TLS) may take CONNECT_TIMEOUT_MS (gRPC calls this the minimum
     * reconnect backoff) */
    grpc_arg args[4] = {
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
         .value.integer = (int)sb_cfg_int("RECONNECT_INITIAL_MS", 250, 100, 60000)},
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
         .value.integer = (int)sb_cfg_int("RECONNECT_MAX_MS", 2000, 100, 120000)},
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
         .value.integer = (int)sb_cfg_int("CONNECT_TIMEOUT_MS", 2000, 100, 60000)},
        {.type = GRPC_ARG_STRING,
         .key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
         .value.string = (char *)service},
    };
    grpc_channel_args cargs = {.num_args = service && !sb_tls_insecure() ? 4 : 3, .args = args};
    ch = grpc_channel_create(target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    return ch;
}

/* The cached channel for (target, service, cert, key), created on first use. */
static sb_channel_t *channel_get(const char *target, const char *service, const char *cert,
                                 const char *key)
{
    pthread_mutex_lock(&channels_mu);
    struct sb_channel *c = channels;
    while (c && !(strcmp(c->target, target) == 0 && str_eq(c->service, service) &&
                  str_eq(c->cert, cert) && str_eq(c->key, key)))
        c = c->next;
    if (!c) {
        grpc_init();
        if (!poller_cq) { /* the first channel: start the poller (it holds a grpc_init of its own) */
            grpc_init();
            poller_cq = grpc_completion_queue_create_for_next(NULL);
            pthread_create(&poller, NULL, poller_main, NULL);
        }
        c = sb_calloc(1, sizeof *c);
        c->target = sb_strdup(target);
        c->service = service ? sb_strdup(service) : NULL;
        c->cert = cert ? sb_strdup(cert) : NULL;
        c->key = key ? sb_strdup(key) : NULL;
        c->ch = channel_new(target, service, cert, key);
        c->next = channels;
        channels = c;
    }
    pthread_mutex_unlock(&channels_mu);
    return c;
}

sb_channel_t *sb_channel_get_for(const char *target, const char *service)
{
    return channel_get(target, service, NULL, NULL);
}

sb_channel_t *sb_channel_get_with_identity(const char *target, const char *service,
                                           const char *cert_file, const char *key_file)
{
    return channel_get(target, service, cert_file, cert_file ? key_file : NULL);
}

sb_channel_t *sb_channel_get_service(const char *name)
{
    const char *target = sb_registry_addr(name);
    if (!target) {
        sb_error("grpc: no service %s in the registry", name);
        return NULL;
    }
    return sb_channel_get_for(target, name);
}

sb_channel_t *sb_channel_get(const char *target)
{
    /* the registry's service at that address, if any, names the certificate */
    for (size_t i = 0; i < sb_registry_n; i++) {
        const char *addr = sb_registry_addr(sb_registry[i].name);
        if (addr && strcmp(addr, target) == 0)
            return sb_channel_get_for(target, sb_registry[i].name);
    }
    return sb_channel_get_for(target, NULL);
}

void sb_channels_free_all(void)
{
    pthread_mutex_lock(&channels_mu);
    while (channels) {
        struct sb_channel *n = channels->next;
        grpc_channel_destroy(channels->ch);
        free(channels->target);
        free(channels->service);
        free(channels->cert);
        free(channels->key);
        free(channels);
        channels = n;
        grpc_shutdown();
    }
    if (poller_cq) {
        grpc_completion_queue_shutdown(poller_cq);
        pthread_join(poller, NULL);
        grpc_completion_queue_destroy(poller_cq);
        poller_cq = NULL;
        grpc_shutdown();
    }
    pthread_mutex_unlock(&channels_mu);
}

static grpc_metadata md_pair(const char *k, const char *v)
{
    grpc_metadata m;
    memset(&m, 0, sizeof m);
    m.key = grpc_slice_from_static_string(k);
    m.value = grpc_slice_from_copied_string(v);
    return m;
}

/* One unary call's state, shared by the blocking client (a pluck queue of its
 * own) and the asynchronous one (the loop's queue, sb_rpc_call_start): the
 * metadata, the six ops of the one batch and what they fill in. */
typedef struct rpc_call {
    grpc_call *call;
    grpc_metadata md[3];
    size_t nmd;
    grpc_byte_buffer *req_bb, *resp_bb;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code status;
    grpc_slice details;
    grpc_op ops[6];
} rpc_call_t;

/* Creates the call on cq and starts its batch with tag. On failure nothing
 * is left to release. */
static sb_status_t call_begin(rpc_call_t *c, sb_channel_t *ch, const char *path, const void *req,
                              size_t len, const sb_call_opts_t *opts, grpc_completion_queue *cq,
                              void *tag, sb_buf_t *err)
{
    sb_call_opts_t o = opts ? *opts : (sb_call_opts_t){0};
    int64_t timeout = o.timeout_ms > 0 ? o.timeout_ms : 5000;
    const char *trace = o.trace_id ? o.trace_id : sb_log_trace();

    memset(c, 0, sizeof *c);
    /* the end user's proof travels as is; this process is known to the
     * server by its TLS client certificate (the channel's credentials) */
    if (trace && *trace)
        c->md[c->nmd++] = md_pair(SB_MD_TRACE_ID, trace);
    if (o.client_ip && *o.client_ip)
        c->md[c->nmd++] = md_pair(SB_MD_CLIENT_IP, o.client_ip);
    if (o.token && *o.token) {
        size_t n = strlen(o.token) + 8;
        char *bearer = sb_malloc(n);
        snprintf(bearer, n, "Bearer %s", o.token);
        c->md[c->nmd++] = md_pair(SB_MD_AUTHORIZATION, bearer);
        free(bearer);
    }

    grpc_slice method = grpc_slice_from_copied_string(path);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(timeout, GPR_TIMESPAN));
    c->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL, deadline,
                                       NULL);
    grpc_slice_unref(method);

    grpc_slice sl = grpc_slice_from_copied_buffer(req, len);
    c->req_bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    grpc_metadata_array_init(&c->init_md);
    grpc_metadata_array_init(&c->trail_md);
    c->status = GRPC_STATUS_UNKNOWN;
    c->details = grpc_empty_slice();

    grpc_op *ops = c->ops;
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c->nmd;
    ops[0].data.send_initial_metadata.metadata = c->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->req_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->resp_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trail_md;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;

    if (grpc_call_start_batch(c->call, ops, 6, tag, NULL) != GRPC_CALL_OK) {
        sb_buf_addf(err, "cannot start call %s", path);
        return SB_INTERNAL;
    }
    return SB_OK;
}

/* The finished batch's status; on OK the response bytes are appended to resp. */
static sb_status_t call_result(rpc_call_t *c, bool cancelled_here, sb_buf_t *resp, sb_buf_t *err)
{
    sb_status_t st = (sb_status_t)c->status;
    if (st == SB_CANCELLED) {
        /* the blocking client never cancels a call, so the server did: it
         * was shutting down (a call it could not finish in its grace period,
         * or one that reached it as it stopped); an asynchronous call may
         * also be cancelled by its loop's owner as it stops. Retryable:
         * UNAVAILABLE, never CANCELLED (the gateway's 499, "the client went
         * away"). */
        sb_buf_adds(err, cancelled_here ? "call cancelled: this process is shutting down: "
                                        : "call cancelled by the server (shutting down?): ");
        st = SB_UNAVAILABLE;
    }
    if (st != SB_OK) {
        sb_buf_add(err, GRPC_SLICE_START_PTR(c->details), GRPC_SLICE_LENGTH(c->details));
    } else if (c->resp_bb) {
        grpc_byte_buffer_reader reader;
        if (grpc_byte_buffer_reader_init(&reader, c->resp_bb)) {
            grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
            sb_buf_add(resp, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all));
            grpc_slice_unref(all);
            grpc_byte_buffer_reader_destroy(&reader);
        } else {
            sb_buf_adds(err, "undecodable response payload");
            st = SB_INTERNAL;
        }
    } else {
        sb_buf_adds(err, "OK status without a response message");
        st = SB_INTERNAL;
    }
    return st;
}

static void call_end(rpc_call_t *c)
{
    if (c->resp_bb)
        grpc_byte_buffer_destroy(c->resp_bb);
    grpc_byte_buffer_destroy(c->req_bb);
    grpc_slice_unref(c->details);
    grpc_metadata_array_destroy(&c->init_md);
    grpc_metadata_array_destroy(&c->trail_md);
    for (size_t i = 0; i < c->nmd; i++)
        grpc_slice_unref(c->md[i].value);
    grpc_call_unref(c->call);
}

sb_status_t sb_rpc_call_raw(sb_channel_t *ch, const char *path, const void *req, size_t len,
                            sb_buf_t *resp, const sb_call_opts_t *opts, sb_buf_t *err)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    rpc_call_t c;
    sb_status_t st = call_begin(&c, ch, path, req, len, opts, cq, &c, err);
    if (st == SB_OK) {
        grpc_completion_queue_pluck(cq, &c, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        st = call_result(&c, false, resp, err);
    }
    call_end(&c);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    return st;
}

/* The method of desc named `method`, checked against req's type; writes
 * "/pkg.Service/Method" to path. */
static const ProtobufCMethodDescriptor *method_of(const ProtobufCServiceDescriptor *desc,
                                                  const char *method, const ProtobufCMessage *req,
                                                  char *path, size_t n, sb_buf_t *err)
{
    const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(desc, method);
    if (!m) {
        sb_buf_addf(err, "%s has no method %s", desc->name, method);
        return NULL;
    }
    if (req->descriptor != m->input) {
        sb_buf_addf(err, "%s/%s takes %s, not %s", desc->name, method, m->input->name,
                    req->descriptor->name);
        return NULL;
    }
    snprintf(path, n, "/%s/%s", desc->name, method);
    return m;
}

/* ---------------------------------------------------- asynchronous client */

struct sb_rpc_loop {
    grpc_completion_queue *cq;
    pthread_t *threads;
    int n_threads;
    pthread_mutex_t mu;
    struct async_call *calls; /* started, not yet completed (for cancel_all) */
    size_t n_calls;
    bool cancelling; /* cancel_all ran: calls started from now on are cancelled at once */
};

typedef struct async_call {
    rpc_call_t c; /* first: its address is the batch's tag */
    struct async_call *prev, *next;
    sb_rpc_loop_t *loop;
    const ProtobufCMessageDescriptor *output;
    sb_arena_t *arena;
    sb_rpc_done_fn done;
    void *arg;
    bool started;    /* its batch is running (under the loop's mu) */
    bool completed;  /* its completion came (under mu) */
    bool cancelled;  /* cancelled by sb_rpc_loop_cancel_all (under mu) */
    atomic_int refs; /* the starter's and the completion's */
} async_call_t;

static void async_unref(async_call_t *ac)
{
    if (atomic_fetch_sub(&ac->refs, 1) == 1)
        free(ac);
}

static void async_unlink(sb_rpc_loop_t *l, async_call_t *ac)
{
    if (ac->prev)
        ac->prev->next = ac->next;
    else
        l->calls = ac->next;
    if (ac->next)
        ac->next->prev = ac->prev;
    l->n_calls--;
}

/* The server's SB_MD_CACHE_TTL among the initial metadata: ms >= 0, or -1
 * when absent or not a number. */
static int64_t cache_ttl_of(const grpc_metadata_array *md)
{
    for (size_t i = 0; i < md->count; i++) {
        if (!grpc_slice_str_cmp(md->metadata[i].key, SB_MD_CACHE_TTL)) {
            const char *v = (const char *)GRPC_SLICE_START_PTR(md->metadata[i].value);
            size_t n = GRPC_SLICE_LENGTH(md->metadata[i].value);
            int64_t ms = 0;
            if (n == 0 || n > 12)
                return -1;
            for (size_t j = 0; j < n; j++) {
                if (v[j] < '0' || v[j] > '9')
                    return -1;
                ms = ms * 10 + (v[j] - '0');
            }
            return ms;
        }
    }
    return -1;
}

static void async_complete(async_call_t *ac)
{
    sb_rpc_loop_t *l = ac->loop;
    pthread_mutex_lock(&l->mu);
    async_unlink(l, ac);
    ac->completed = true;
    bool cancelled = ac->cancelled;
    pthread_mutex_unlock(&l->mu);

    sb_buf_t bytes = SB_BUF_INIT, err = SB_BUF_INIT;
    ProtobufCMessage *resp = NULL;
    int64_t ttl_ms = -1;
    sb_status_t st = call_result(&ac->c, cancelled, &bytes, &err);
    if (st == SB_OK) {
        ttl_ms = cache_ttl_of(&ac->c.init_md);
        resp = protobuf_c_message_unpack(ac->output, sb_arena_pb_allocator(ac->arena), bytes.len,
                                         (const uint8_t *)bytes.buf);
        if (!resp) {
            sb_buf_addf(&err, "malformed %s response", ac->output->name);
            st = SB_INTERNAL;
        }
    }
    call_end(&ac->c);
    sb_buf_release(&bytes);
    ac->done(ac->arg, st, resp, err.buf, st == SB_OK ? ttl_ms : -1);
    sb_buf_release(&err);
    async_unref(ac);
}

static void *loop_main(void *arg)
{
    sb_rpc_loop_t *l = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(l->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE)
            async_complete(ev.tag);
    }
    return NULL;
}

sb_rpc_loop_t *sb_rpc_loop_new(int threads)
{
    sb_rpc_loop_t *l = sb_calloc(1, sizeof *l);
    grpc_init();
    l->cq = grpc_completion_queue_create_for_next(NULL);
    pthread_mutex_init(&l->mu, NULL);
    l->n_threads = threads > 0 ? threads : 1;
    l->threads = sb_calloc((size_t)l->n_threads, sizeof *l->threads);
    for (int i = 0; i < l->n_threads; i++)
        pthread_create(&l->threads[i], NULL, loop_main, l);
    return l;
}

sb_status_t sb_rpc_call_start(sb_rpc_loop_t *l, sb_channel_t *ch, const ProtobufCServiceDescriptor *desc,
                              const char *method, const ProtobufCMessage *req, sb_arena_t *arena,
                              const sb_call_opts_t *opts, sb_rpc_done_fn done, void *arg, sb_buf_t *err)
{
    char path[256];
    const ProtobufCMethodDescriptor *m = method_of(desc, method, req, path, sizeof path, err);
    if (!m)
        return SB_INTERNAL;
    size_t n = protobuf_c_message_get_packed_size(req);
    uint8_t *bytes = sb_arena_alloc(arena, n ? n : 1);
    protobuf_c_message_pack(req, bytes);

    async_call_t *ac = sb_calloc(1, sizeof *ac);
    ac->loop = l;
    ac->output = m->output;
    ac->arena = arena;
    ac->done = done;
    ac->arg = arg;
    atomic_init(&ac->refs, 2);
    /* listed before the batch starts: its completion may come at once, on a
     * loop thread, before this function has returned (hence the two refs) */
    pthread_mutex_lock(&l->mu);
    ac->next = l->calls;
    if (l->calls)
        l->calls->prev = ac;
    l->calls = ac;
    l->n_calls++;
    pthread_mutex_unlock(&l->mu);
    sb_status_t st = call_begin(&ac->c, ch, path, bytes, n, opts, l->cq, ac, err);
    pthread_mutex_lock(&l->mu);
    if (st != SB_OK) {
        async_unlink(l, ac); /* no completion comes */
    } else if (!ac->completed) {
        ac->started = true;
        if (l->cancelling) {
            ac->cancelled = true;
            grpc_call_cancel(ac->c.call, NULL);
        }
    }
    pthread_mutex_unlock(&l->mu);
    if (st != SB_OK) {
        call_end(&ac->c);
        free(ac);
        return st;
    }
    async_unref(ac);
    return SB_OK;
}

size_t sb_rpc_loop_pending(sb_rpc_loop_t *l)
{
    pthread_mutex_lock(&l->mu);
    size_t n = l->n_calls;
    pthread_mutex_unlock(&l->mu);
    return n;
}

void sb_rpc_loop_cancel_all(sb_rpc_loop_t *l)
{
    pthread_mutex_lock(&l->mu);
    l->cancelling = true;
    for (async_call_t *ac = l->calls; ac; ac = ac->next)
        if (ac->started && !ac->cancelled) {
            ac->cancelled = true;
            grpc_call_cancel(ac->c.call, NULL);
        }
    pthread_mutex_unlock(&l->mu);
}

void sb_rpc_loop_free(sb_rpc_loop_t *l)
{
    if (!l)
        return;
    sb_rpc_loop_cancel_all(l);
    while (sb_rpc_loop_pending(l) > 0) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    grpc_completion_queue_shutdown(l->cq);
    for (int i = 0; i < l->n_threads; i++)
        pthread_join(l->threads[i], NULL);
    grpc_completion_queue_destroy(l->cq);
    pthread_mutex_destroy(&l->mu);
    free(l->threads);
    free(l);
    grpc_shutdown();
}

sb_status_t sb_rpc_call(sb_channel_t *ch, const ProtobufCServiceDescriptor *desc, const char *method,
                        const ProtobufCMessage *req, sb_arena_t *arena, ProtobufCMessage **resp,
                        const sb_call_opts_t *opts, sb_buf_t *err)
{
    char path[256];
    const ProtobufCMethodDescriptor *m = method_of(desc, method, req, path, sizeof path, err);
    *resp = NULL;
    if (!m)
        return SB_INTERNAL;
    size_t n = protobuf_c_message_get_packed_size(req);
    uint8_t *bytes = sb_arena_alloc(arena, n ? n : 1);
    protobuf_c_message_pack(req, bytes);
    sb_buf_t out = SB_BUF_INIT;
    sb_status_t st = sb_rpc_call_raw(ch, path, bytes, n, &out, opts, err);
    if (st == SB_OK) {
        *resp = protobuf_c_message_unpack(m->output, sb_arena_pb_allocator(arena), out.len,
                                          (const uint8_t *)out.buf);
        if (!*resp) {
            sb_buf_addf(err, "malformed %s response", m->output->name);
            st = SB_INTERNAL;
        }
    }
    sb_buf_release(&out);
    return st;
}
