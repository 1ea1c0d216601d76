/* The service skeleton: everything a service's main() would otherwise repeat.
 *
 *     int main(void) { return sb_service_main(&member_service); }
 *
 * Every RPC runs through sb_service_call, which carries out the flags of its
 * method row (sb/rpc.h): ctx->db on the service's pool, the row's
 * transaction with its retries, idempotency keys (service_call.c).
 *
 * sb_service_main reads the configuration, opens the service's own database
 * (created if missing) and applies the common and the service's migrations,
 * connects Redis and the Kafka producer, starts the outbox relay, the event
 * consumer (when on_event is set), the admin HTTP listener (/metrics,
 * /healthz, /readyz) and the gRPC server, then waits for SIGTERM/SIGINT and
 * shuts down in reverse order, letting calls in flight finish. */
#ifndef SB_SERVICE_H
#define SB_SERVICE_H
#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#include "sb/events.h"
#include "sb/pg.h"
#include "sb/redis.h"
#include "sb/rpc.h"

typedef struct sb_service sb_service_t;

typedef struct sb_service_def {
    const char *name;  /* "member": database sb_member, consumer group sb-member */
    const ProtobufCServiceDescriptor *descriptor;
    const sb_rpc_method_t *methods;
    size_t n_methods;
    const sb_migration_set_t *migrations; /* SB_SERVICE_MIGRATIONS(name) */
    const char *const *topics; /* consumed topics (NULL-terminated), with on_event */
    sb_event_fn on_event;
    /* Optional hooks: init runs after the infrastructure is up and before
     * serving (non-OK aborts start-up); fini runs after the server stopped. */
    sb_status_t (*init)(sb_service_t *svc, sb_buf_t *err);
    void (*fini)(sb_service_t *svc);
} sb_service_def_t;

struct sb_service {
    const sb_service_def_t *def;
    sb_pg_pool_t *pg;
    sb_redis_t *redis;
    sb_producer_t *producer;
    sb_relay_t *relay;
    sb_consumer_t *consumer;
    sb_server_t *server;
    void *user; /* the service's own state, set by init */
};

/* Declares the migrations embedded from services/<name>/migrations. */
#define SB_SERVICE_MIGRATIONS(name) extern const sb_migration_set_t sb_##name##_migrations

/* Returns the process exit code. */
int sb_service_main(const sb_service_def_t *def);
/* The service a handler runs in. */
static inline sb_service_t *sb_service_of(const sb_rpc_ctx_t *ctx)
{
    return (sb_service_t *)ctx->service_data;
}

/* The runner of every service RPC (sb_server_add_service_run with the
 * sb_service_t as service data): sets ctx->db up on svc->pg and runs row->fn
 * as its flags ask (service_call.c has the model). Public for tests and
 * servers built by hand. */
sb_status_t sb_service_call(sb_rpc_ctx_t *ctx, const sb_rpc_method_t *row, const ProtobufCMessage *in,
                            ProtobufCMessage *out);
/* The table idempotent rows keep their answers in (sb_idempotency); every
 * service's database gets it at start-up. */
sb_status_t sb_idempotency_migrate(sb_pg_pool_t *pool, sb_buf_t *err);

/* Handlers every service can list as they are (admin only):
 *   {"DeliverEvent", sb_service_deliver_event}: one event through the service's
 *       inbox and on_event, as if it came from Kafka (a known id is dropped);
 *   {"ReplayEvents", sb_service_replay_events}: marks the service's published
 *       "<name>." events (since an optional time) for the relay to publish again.
 * sb_service_replay is the same with another type prefix. */
sb_status_t sb_service_deliver_event(sb_rpc_ctx_t *ctx, const void *in, void *out);
sb_status_t sb_service_replay_events(sb_rpc_ctx_t *ctx, const void *in, void *out);
sb_status_t sb_service_replay(sb_rpc_ctx_t *ctx, const void *in, void *out, const char *type_prefix);

/* Admin HTTP listener on 127.0.0.1/0.0.0.0:port serving /metrics (Prometheus
 * text), /healthz and /readyz (ready() decides; NULL = always). */
typedef struct sb_admin sb_admin_t;
sb_admin_t *sb_admin_start(int port, _Bool (*ready)(void *arg), void *arg, sb_buf_t *err);
void sb_admin_stop(sb_admin_t *a);

#endif
