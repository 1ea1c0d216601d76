/* The service skeleton: everything a service's main() would otherwise repeat.
 * A service's main.c is its tables and one line (SB_SERVICE_MAIN):
 *
 *     SB_SERVICE_MAIN(reservation, SB_METHODS(methods), SB_EVENTS(events));
 *
 * Every RPC runs through sb_service_call, which carries out the flags of its
 * method row (sb/rpc.h): ctx->db on the service's pool, the row's
 * transaction with its retries, idempotency keys (service_call.c).
 *
 * sb_service_main reads the configuration, opens the service's own database
 * (created if missing) and applies the common and the service's migrations,
 * connects Redis and the Kafka producer, starts the outbox relay (a job), the
 * event consumer (when the service has event rows), its jobs, the admin HTTP listener (/metrics,
 * /healthz, /readyz) and the gRPC server, then waits for SIGTERM/SIGINT and
 * shuts down in reverse order, letting calls in flight finish. */
#ifndef SB_SERVICE_H
#define SB_SERVICE_H
#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#include "sb/events.h"
#include "sb/jobs.h"
#include "sb/pg.h"
#include "sb/authn.h"
#include "sb/ready.h"
#include "sb/redis.h"
#include "sb/rpc.h"

typedef struct sb_service sb_service_t;

enum { SB_KAFKA_UNKNOWN = 0, SB_KAFKA_UP, SB_KAFKA_DOWN };

typedef struct sb_service_def {
    const char *name; /* "member": database sb_member, consumer group sb-member */
    const ProtobufCServiceDescriptor *descriptor;
    const sb_rpc_method_t *methods;
    size_t n_methods;
    const sb_migration_set_t *migrations; /* SB_SERVICE_MIGRATIONS(name) */
    /* The event table: {"member.withdrawn", &sb__events__member_withdrawn__descriptor,
     * on_withdrawn} rows (sb/events.h); the consumer reads the topics of their
     * types. Handlers get the sb_service_t as ev->arg (sb_event_service). */
    const sb_event_handler_t *events;
    size_t n_events;
    /* The job table: {"hold-expiry", expire_holds, .every_ms = 1000} rows
     * (sb/jobs.h), each on a thread of its own, one replica at a time; job->arg
     * is the sb_service_t (sb_job_service). The outbox relay is not listed: every
     * service runs it. */
    const sb_job_t *jobs;
    size_t n_jobs;
    /* Optional hooks: check runs first, before anything is touched (a bad
     * setting stops the process at once, err saying which); init runs after
     * the infrastructure is up and before serving (non-OK aborts start-up);
     * fini runs after the server stopped. */
    sb_status_t (*check)(sb_buf_t *err);
    sb_status_t (*init)(sb_service_t *svc, sb_buf_t *err);
    void (*fini)(sb_service_t *svc);
} sb_service_def_t;

struct sb_service {
    const sb_service_def_t *def;
    sb_pg_pool_t *pg;
    sb_redis_t *redis;
    sb_authn_t *authn; /* verifies end users' access tokens (sb/authn.h) */
    sb_producer_t *producer;
    sb_jobs_t *relay; /* the outbox relay (sb_outbox_relay_job) */
    sb_jobs_t *jobs;  /* the service's job table */
    sb_consumer_t *consumer;
    sb_server_t *server;
    struct sb_health *health; /* the health refresher (sb_service_health_start) */
    _Atomic int kafka_state;  /* SB_KAFKA_UNKNOWN/UP/DOWN, as the refresher found it */
    void *user;               /* the service's own state, set by init */
};

/* Table fields of a definition from an array:
 *   static const sb_service_def_t def = {.name = "member", ..., SB_METHODS(methods)}; */
#define SB_COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define SB_METHODS(a) .methods = (a), .n_methods = SB_COUNT(a)
#define SB_EVENTS(a) .events = (a), .n_events = SB_COUNT(a)
#define SB_JOBS(a) .jobs = (a), .n_jobs = SB_COUNT(a)

/* Declares the migrations embedded from services/<name>/migrations. */
#define SB_SERVICE_MIGRATIONS(name) extern const sb_migration_set_t sb_##name##_migrations

/* Returns the process exit code. */
int sb_service_main(const sb_service_def_t *def);

/* A service's main(): declares the migrations embedded from
 * services/<svc>/migrations and runs sb_service_main on a definition named
 * after the service, whose contract is sb.<svc>.<Svc>Service
 * (sb__<svc>__<svc>_service__descriptor); the other fields of
 * sb_service_def_t follow as designated initialisers:
 *     SB_SERVICE_MAIN(auth, SB_METHODS(methods), .init = auth_init); */
#define SB_SERVICE_MAIN(svc, ...)                                                                       \
    SB_SERVICE_MIGRATIONS(svc);                                                                         \
    static const sb_service_def_t sb_##svc##_service = {.name = #svc,                                   \
                                                        .descriptor =                                   \
                                                            &sb__##svc##__##svc##_service__descriptor,  \
                                                        .migrations = &sb_##svc##_migrations,           \
                                                        __VA_ARGS__};                                   \
    int main(void)                                                                                      \
    {                                                                                                   \
        return sb_service_main(&sb_##svc##_service);                                                    \
    }

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
/* The service a job runs in. */
static inline sb_service_t *sb_job_service(const sb_job_ctx_t *job)
{
    return (sb_service_t *)job->arg;
}
/* The service an event handler runs in. */
static inline sb_service_t *sb_event_service(const sb_event_ctx_t *ev)
{
    return (sb_service_t *)ev->arg;
}

/* Handlers every service can list as they are (admin only):
 *   {"DeliverEvent", sb_service_deliver_event}: one event through the service's
 *       inbox and event table, as if it came from Kafka (a known id is
 *       dropped; a malformed event is a dead letter and INVALID_ARGUMENT);
 *   {"ReplayEvents", sb_service_replay_events}: marks the service's published
 *       "<name>." events of one aggregate (aggregateId) and/or of a time range
 *       [since, until) for the relay to publish again (sb_outbox_replay); one
 *       of aggregateId and since is required, every refusal changes nothing.
 *       Answers the count and the first event ids; logs the admin and filters.
 * sb_service_replay is the same with another type prefix. */
sb_rpc_handler_t sb_service_deliver_event, sb_service_replay_events;
sb_status_t sb_service_replay(sb_rpc_ctx_t *ctx, const void *in, void *out, const char *type_prefix);

/* Registers on server the rpcs every service serves (proto/runtime.proto,
 * sb.runtime.Runtime), run by sb_service_call on svc: ListDeadLetters and
 * ReplayDeadLetter (dead_letters.c; admin only). sb_service_main does it;
 * public for servers built by hand (tests). */
void sb_service_add_runtime(sb_server_t *server, sb_service_t *svc);

/* Admin HTTP listener on 127.0.0.1/0.0.0.0:port serving /metrics (Prometheus
 * text), /healthz and /readyz (what ready reports, sb/ready.h; NULL: always
 * ready). */
typedef struct sb_admin sb_admin_t;
sb_admin_t *sb_admin_start(int port, sb_ready_fn ready, void *arg, sb_buf_t *err);

/* A service's readiness (sb_service_main's /readyz): PostgreSQL and Redis
 * required, asked now; Kafka optional, as the refresher last found it (the
 * outbox keeps events while the broker is away, so the service still
 * serves). */
void sb_service_ready(void *svc, sb_ready_t *r);
/* The health refresher (health.c): a thread that every every_ms refreshes
 * the /metrics gauges sb_outbox_unpublished,
 * sb_outbox_oldest_unpublished_age_seconds, sb_dead_letters (unreplayed),
 * sb_kafka_broker_up and sb_consumer_lag{topic,partition} from svc (its
 * pool, producer and consumer, each optional) and the Kafka state /readyz
 * reports. sb_service_main starts it (HEALTH_REFRESH_MS); stop it before
 * what it reads goes. */
typedef struct sb_health sb_health_t;
sb_health_t *sb_service_health_start(sb_service_t *svc, int every_ms);
void sb_service_health_stop(sb_health_t *h); /* NULL is fine */
void sb_admin_stop(sb_admin_t *a);

#endif
