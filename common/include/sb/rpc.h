/* gRPC server and client over the gRPC core C API, driven by protobuf-c
 * service descriptors.
 *
 * Server: sb_server_add_service() registers every method of a service;
 * methods without a handler answer UNIMPLEMENTED. Worker threads each own a
 * completion queue and run one call at a time: receive the request bytes,
 * unpack them into the call's arena (malformed -> INVALID_ARGUMENT), check the
 * caller against the method's access policy (the API table, sb/api.h), call
 * the handler, pack the response or send the status with its message.
 *
 * Handlers never see sockets, queues or byte buffers, nor BEGIN or COMMIT:
 *
 *     static sb_status_t get_member(sb_rpc_ctx_t *ctx, const void *in, void *out)
 *     {
 *         const Sb__Member__GetMemberRequest *req = in;
 *         Sb__Member__Member *resp = out;   // already initialised
 *         PGresult *r;
 *         sb_status_t st = sb_db_exec(ctx->db, &select_member, &r, req->user_id);
 *         if (st != SB_OK)
 *             return st;                    // internal: the runtime answers for it
 *         if (PQntuples(r) == 0)
 *             return sb_rpc_fail(ctx, SB_NOT_FOUND, "member %s not found", req->user_id);
 *         ...
 *     }
 *     static const sb_rpc_method_t methods[] = {
 *         {"GetMember", get_member, .tx = SB_TX_READ},
 *         {"UpdateMember", update_member, .tx = SB_TX},
 *         {"CreateReservation", resv_create, .tx = SB_TX, .idempotent = true},
 *     };
 *
 * Two kinds of message leave a handler. A refusal (sb_rpc_fail) is the
 * status and text the client reads. Anything else non-OK is an internal
 * failure: its detail (SQL errors, library errors) goes to ctx->detail, which
 * only the log reads, and the server answers for it in one place, logged
 * once with the trace id: UNAVAILABLE, ABORTED and DEADLINE_EXCEEDED keep
 * their status with "<service> service unavailable; try again", anything
 * else becomes INTERNAL "internal error".
 *
 * The flags of a row (transaction, isolation, idempotency) are carried out
 * by the runner the service layer registers with sb_server_add_service_run
 * (sb/service.h: sb_service_call); this layer knows nothing of PostgreSQL. */
#ifndef SB_RPC_H
#define SB_RPC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "sb/arena.h"
#include "sb/buf.h"
#include "sb/jwt.h"
#include "sb/status.h"
#include "sb/valid.h"

/* Metadata keys carried between services (and set by the gateway). */
#define SB_MD_TRACE_ID "x-trace-id"
/* The end user's proof: "authorization: Bearer <ES256 access token>". The
 * server verifies it before any handler runs (sb_server_set_authenticator);
 * identity metadata a caller writes itself (x-user-id, x-user-role, ...) is
 * never read. A calling service is known by its verified TLS client
 * certificate only (sb/tls.h). */
#define SB_MD_AUTHORIZATION "authorization"
/* The end user's address as the edge saw it, for per-client limits. Read
 * only from a caller whose certificate names SB_EDGE_SERVICE (the gateway);
 * anyone else is limited by their own peer address. */
#define SB_MD_CLIENT_IP "x-client-ip"
/* Initial metadata of an OK answer that came out of the server's cache
 * (sb/rpc_cache.h): how many more milliseconds it is fresh. A caller that
 * caches the answer itself (the gateway) keeps it no longer than that, so
 * the lag bound of a cached read stays its max_age_ms however many caches
 * it crossed. Absent: a fresh answer. */
#define SB_MD_CACHE_TTL "x-sb-cache-ttl-ms"
#define SB_EDGE_SERVICE "gateway"

typedef struct sb_db sb_db_t; /* sb/db.h */
typedef struct sb_rpc_method sb_rpc_method_t;

typedef struct sb_rpc_ctx {
    sb_arena_t *arena;          /* the call's arena: response strings, scratch */
    const char *method;         /* "/pkg.Service/Method" */
    int64_t deadline_ms;        /* unix ms; INT64_MAX when the caller set none */
    const char *trace_id;       /* from metadata, or generated; never NULL */
    const char *user_id;        /* the end user, from the verified access token; "" when anonymous */
    const char *user_role;      /* "USER", "PLANNER", "ADMIN" (verified) or "" */
    const char *token;          /* the verified access token as received (to pass on); "" when none */
    const char *caller_service; /* the calling service: its verified client certificate's
                                   name; "" when the peer presented none */
    void *service_data;         /* the pointer given to sb_server_add_service */
    const sb_rpc_method_t *row; /* the row being run */
    const struct sb_api_method *api; /* its API table row (sb/api.h); NULL for services
                                        the table does not know (health, test fixtures) */
    const char *client_ip;           /* the end user's address: the edge's x-client-ip when
                                        the caller is SB_EDGE_SERVICE, else the peer's host */
    sb_db_t *db;                     /* the call's database (sb/db.h), set by the service
                                        runner: inside the row's transaction for a tx row;
                                        NULL on a server without one */
    sb_buf_t err;                    /* the refusal the client reads; set by sb_rpc_fail only */
    sb_buf_t detail;                 /* internal detail for the log only (never sent) */
    int64_t cache_ttl_ms;            /* > 0: the answer came from the cache and is fresh
                                        this long (sent as SB_MD_CACHE_TTL) */
} sb_rpc_ctx_t;

/* in: the unpacked request (owned by the call); out: the response message,
 * initialised, allocated in ctx->arena; fill it with arena memory. A
 * service declares its handlers with the function type:
 *     sb_rpc_handler_t member_signup, member_get; */
typedef sb_status_t sb_rpc_handler_t(sb_rpc_ctx_t *ctx, const void *in, void *out);
typedef sb_rpc_handler_t *sb_rpc_handler_fn;

/* What the runner wraps a handler in. */
typedef enum sb_tx {
    SB_TX_NONE = 0, /* no transaction: each statement borrows a connection
                       for itself alone (autocommit) */
    SB_TX,          /* one transaction around the handler: committed when it
                       returns OK, rolled back otherwise, run again on a
                       serialization failure or deadlock */
    SB_TX_READ,     /* the same, READ ONLY: one snapshot across statements */
} sb_tx_t;

struct sb_rpc_method {
    const char *name; /* method name as written in the .proto */
    sb_rpc_handler_fn fn;
    sb_tx_t tx;
    int iso;         /* the transaction's sb_pg_isolation_t (sb/pg.h); 0 = READ COMMITTED */
    bool idempotent; /* a request carrying an idempotency_key field gets the first
                        answer given to that key again (see sb_service_call) */
};

/* Runs row->fn for one call with whatever the row's flags ask for; returns
 * the handler's status. Installed per service by sb_server_add_service_run. */
typedef sb_status_t (*sb_rpc_run_fn)(sb_rpc_ctx_t *ctx, const sb_rpc_method_t *row,
                                     const ProtobufCMessage *in, ProtobufCMessage *out);

/* A refusal: sets ctx->err (what the client reads) to the formatted message,
 * logs it, and returns st. */
sb_status_t sb_rpc_fail(sb_rpc_ctx_t *ctx, sb_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An internal failure: appends the formatted detail to ctx->detail (the log
 * only) and returns st, which the server then answers for (see above). */
sb_status_t sb_rpc_error(sb_rpc_ctx_t *ctx, sb_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A keyset list request's page (sb_page_request): SB_OK and *p filled, or
 * INVALID_ARGUMENT with sb_page_request's message. */
sb_status_t sb_rpc_page(sb_rpc_ctx_t *ctx, int32_t page_size, const char *token, int def, int max,
                        sb_page_t *p);
/* The caller's role, from the verified access token. */
static inline bool sb_rpc_is_admin(const sb_rpc_ctx_t *ctx)
{
    return ctx->user_role && __builtin_strcmp(ctx->user_role, "ADMIN") == 0;
}
/* true when the caller is user_id itself (and signed in). */
static inline bool sb_rpc_is_self(const sb_rpc_ctx_t *ctx, const char *user_id)
{
    return ctx->user_id && *ctx->user_id && user_id && __builtin_strcmp(ctx->user_id, user_id) == 0;
}
/* true when the call comes from service `name` (its verified certificate). */
static inline bool sb_rpc_is_service(const sb_rpc_ctx_t *ctx, const char *name)
{
    return ctx->caller_service && *ctx->caller_service &&
           __builtin_strcmp(ctx->caller_service, name) == 0;
}
/* Milliseconds left before the caller's deadline (INT64_MAX if none; may be <= 0). */
int64_t sb_rpc_remaining_ms(const sb_rpc_ctx_t *ctx);

typedef struct sb_server sb_server_t;

/* addr like "0.0.0.0:50051" or "127.0.0.1:0" (ephemeral). Caller frees with
 * sb_server_free. Includes grpc.health.v1.Health. */
sb_server_t *sb_server_new(const char *addr, int workers);
/* descriptor is borrowed and must outlive the server; the rows are copied.
 * Handlers are called directly (the flags of the rows are not looked at). */
void sb_server_add_service(sb_server_t *s, const ProtobufCServiceDescriptor *desc,
                           const sb_rpc_method_t *methods, size_t n_methods, void *service_data);
/* The same with every call of these methods going through run. */
void sb_server_add_service_run(sb_server_t *s, const ProtobufCServiceDescriptor *desc,
                               const sb_rpc_method_t *methods, size_t n_methods, void *service_data,
                               sb_rpc_run_fn run);
/* Binds and starts the workers. */
sb_status_t sb_server_start(sb_server_t *s, sb_buf_t *err);
int sb_server_port(const sb_server_t *s); /* the bound port after start */
/* Health status reported for the service name ("" = the whole server). */
void sb_server_set_serving(sb_server_t *s, bool serving);
/* false once sb_server_set_serving(s, false) or sb_server_shutdown began. */
bool sb_server_serving(const sb_server_t *s);
/* The end-user check every call passes before its handler: fn verifies the
 * bearer token of the call's authorization metadata (sb_authn_verify); a call
 * without one is anonymous. Without an authenticator every call is anonymous. */
typedef sb_status_t (*sb_rpc_authn_fn)(void *arg, const char *token, sb_jwt_claims_t *out,
                                       sb_buf_t *err);
void sb_server_set_authenticator(sb_server_t *s, sb_rpc_authn_fn fn, void *arg);
/* The drain: reports NOT_SERVING, stops accepting (GOAWAY to clients), lets
 * the running calls and those queued for a worker finish for up to grace_ms,
 * then answers what is still queued UNAVAILABLE "shutting down" and cancels
 * what still runs; joins the threads. Logs each phase with counts. */
void sb_server_shutdown(sb_server_t *s, int grace_ms);
void sb_server_free(sb_server_t *s);

/* ---- client ---- */

typedef struct sb_channel sb_channel_t;

/* Channels are TLS (sb/tls.h: TLS_CA_FILE, and this process's certificate
 * when set), one per (target, server name), cached for the life of the
 * process (thread-safe). Borrowed; freed by sb_channels_free_all at exit.
 *
 * The server's certificate must carry the expected name:
 *   sb_channel_get_service("member")  target from the registry ($MEMBER_ADDR or
 *                                     127.0.0.1:<port>); the certificate must name
 *                                     "member" (SSL target name override), whatever
 *                                     the address. NULL for a name not in the registry.
 *   sb_channel_get_for(target, name)  the same with an explicit target; name NULL:
 *                                     the target's host is checked (a DNS SAN, or the
 *                                     IP SAN of an address such as 127.0.0.1).
 *   sb_channel_get(target)            the registry service whose address is target
 *                                     names the certificate; otherwise the target's host. */
sb_channel_t *sb_channel_get_service(const char *name);
sb_channel_t *sb_channel_get_for(const char *target, const char *service);
sb_channel_t *sb_channel_get(const char *target);
/* sb_channel_get_for presenting the certificate cert_file (with its key
 * key_file) instead of this process's own (TLS_CERT_FILE): for a process
 * that calls as more than one service, i.e. the tests calling as a given
 * service (tests/integration/sb_test_pki.h). cert_file NULL: the process's
 * own, as sb_channel_get_for. Cached per (target, name, certificate). */
sb_channel_t *sb_channel_get_with_identity(const char *target, const char *service,
                                           const char *cert_file, const char *key_file);
void sb_channels_free_all(void);

typedef struct sb_call_opts {
    int64_t timeout_ms;    /* 0 = default (5000) */
    const char *trace_id;  /* NULL = the thread's current trace id */
    const char *token;     /* an end user's access token to pass on (sent as
                              authorization: Bearer), or NULL */
    const char *client_ip; /* the end user's address (the gateway), or NULL */
} sb_call_opts_t;

/* Unary call of desc's method `method`. On OK *resp is unpacked into arena
 * (valid until the arena is freed). Otherwise the status and the server's
 * message (in err) are returned. */
sb_status_t sb_rpc_call(sb_channel_t *ch, const ProtobufCServiceDescriptor *desc, const char *method,
                        const ProtobufCMessage *req, sb_arena_t *arena, ProtobufCMessage **resp,
                        const sb_call_opts_t *opts, sb_buf_t *err);
/* Same with raw request bytes and raw response bytes (appended to resp). */
sb_status_t sb_rpc_call_raw(sb_channel_t *ch, const char *path, const void *req, size_t len,
                            sb_buf_t *resp, const sb_call_opts_t *opts, sb_buf_t *err);

/* ---- asynchronous client ----
 *
 * For a caller that must not block on a call (the gateway's event loops):
 * the call is started on a loop's completion queue and its answer comes back
 * to a callback, run on one of the loop's threads. The loop's threads also
 * carry the gRPC core's I/O (it runs on the threads that wait on a queue).
 *
 *     static void got_member(void *arg, sb_status_t st, ProtobufCMessage *resp, const char *err,
 *                            int64_t ttl_ms)
 *     {   // a loop thread: store the answer and wake whoever waits (no blocking here)
 *     }
 *     sb_rpc_call_start(loop, ch, &sb__member__member_service__descriptor, "GetMember",
 *                       &req.base, arena, &opts, got_member, rq, &err);
 */
typedef struct sb_rpc_loop sb_rpc_loop_t;

/* st: the call's status (CANCELLED from the server, or from
 * sb_rpc_loop_cancel_all, is UNAVAILABLE as for sb_rpc_call); on OK resp is
 * the response, unpacked into the arena given to sb_rpc_call_start; else err
 * is the message (borrowed for the callback). ttl_ms: on OK, the server's
 * SB_MD_CACHE_TTL (the answer came from its cache and is fresh this long),
 * else -1. The callback must not block. */
typedef void (*sb_rpc_done_fn)(void *arg, sb_status_t st, ProtobufCMessage *resp, const char *err,
                               int64_t ttl_ms);

/* A completion queue with `threads` threads waiting on it (1 if <= 0).
 * Free with sb_rpc_loop_free. */
sb_rpc_loop_t *sb_rpc_loop_new(int threads);
/* Starts a unary call of desc's method `method` (channel, request, arena and
 * options as for sb_rpc_call; opts is read before it returns, req is packed
 * into arena). On OK, done(arg, ...) runs exactly once, on a loop thread,
 * possibly before this returns; the arena must stay alive and unused by
 * others until then. On an error return (message in err) done never runs. */
sb_status_t sb_rpc_call_start(sb_rpc_loop_t *l, sb_channel_t *ch, const ProtobufCServiceDescriptor *desc,
                              const char *method, const ProtobufCMessage *req, sb_arena_t *arena,
                              const sb_call_opts_t *opts, sb_rpc_done_fn done, void *arg, sb_buf_t *err);
/* Calls started and not yet completed. */
size_t sb_rpc_loop_pending(sb_rpc_loop_t *l);
/* Cancels every call running and every call started from now on: each
 * completes at once with UNAVAILABLE ("this process is shutting down"). */
void sb_rpc_loop_cancel_all(sb_rpc_loop_t *l);
/* Cancels what runs, waits for every callback, stops the threads, frees. */
void sb_rpc_loop_free(sb_rpc_loop_t *l);

#endif
