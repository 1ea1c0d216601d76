/* sb_service_main: the common start-up and shutdown sequence. */
#include "sb/service.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/alloc.h"
#include "sb/config.h"
#include "sb/log.h"
#include "sb/registry.h"
#include "sb/util.h"
#include "sb/authn.h"

/* An idempotent row whose request has no idempotency_key string field is
 * never idempotent: say so at start-up. */
static void check_rows(const sb_service_def_t *def)
{
    for (size_t i = 0; i < def->n_methods; i++) {
        const sb_rpc_method_t *row = &def->methods[i];
        const ProtobufCMethodDescriptor *md =
            protobuf_c_service_descriptor_get_method_by_name(def->descriptor, row->name);
        const ProtobufCFieldDescriptor *f =
            md && row->idempotent
                ? protobuf_c_message_descriptor_get_field_by_name(md->input, "idempotency_key")
                : NULL;
        if (md && row->idempotent && (!f || f->type != PROTOBUF_C_TYPE_STRING))
            sb_warn("%s is idempotent but %s has no string field idempotency_key", row->name,
                    md->input->name);
    }
}

static sb_status_t verify_token(void *arg, const char *token, sb_jwt_claims_t *out, sb_buf_t *err)
{
    return sb_authn_verify(arg, token, out, err);
}

int sb_service_main(const sb_service_def_t *def)
{
    sb_log_init(def->name);
    sb_buf_t err = SB_BUF_INIT;
    if (def->check && def->check(&err) != SB_OK) {
        sb_error("%s service refuses to start: %s", def->name, err.buf);
        sb_buf_release(&err);
        return 1;
    }
    /* Block the stop signals in every thread; the main thread waits for them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    const char *db_url = sb_cfg_str("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres");
    const char *redis_url = sb_cfg_str("REDIS_URL", "redis://127.0.0.1:6379");
    const char *brokers = sb_cfg_str("KAFKA_BROKERS", "127.0.0.1:9092");
    const sb_registry_entry_t *reg = sb_registry_find(def->name);
    long grpc_port = sb_cfg_int("GRPC_PORT", reg ? reg->grpc_port : 0, 0, 65535);
    long admin_port = sb_cfg_int("ADMIN_PORT", reg ? reg->admin_port : 0, 0, 65535);
    long workers = sb_cfg_int("GRPC_WORKERS", 8, 1, 256);
    long pool_size = sb_cfg_int("DB_POOL_SIZE", 8, 1, 128);
    const char *bind = sb_cfg_str("GRPC_BIND", "127.0.0.1"); /* pods set 0.0.0.0 */
    int grace_ms = (int)sb_cfg_int("SHUTDOWN_GRACE_MS", 5000, 0, 600000);

    sb_service_t svc = {.def = def};
    sb_admin_t *admin = NULL;
    int rc = 1;

    const char *ns = sb_cfg_str("SB_NAMESPACE", "");
    if (!sb_namespace_set(ns)) {
        sb_buf_addf(&err, "SB_NAMESPACE must be up to 16 of [a-z0-9_], not \"%.32s\"", ns);
        goto out;
    }
    char dbname[64], group[64], addr[128];
    snprintf(dbname, sizeof dbname, "sb_%s%s%s", def->name, *ns ? "_" : "", ns);
    snprintf(group, sizeof group, "sb-%s%s%s", def->name, *ns ? "." : "", ns);
    snprintf(addr, sizeof addr, "%s:%ld", bind, grpc_port);

    if (sb_pg_ensure_database(db_url, dbname, &err) != SB_OK)
        goto out;
    svc.pg = sb_pg_pool_new(db_url, dbname, (int)pool_size, &err);
    if (!svc.pg)
        goto out;
    if (sb_events_migrate(svc.pg, &err) != SB_OK || sb_idempotency_migrate(svc.pg, &err) != SB_OK ||
        sb_pg_migrate(svc.pg, def->name, def->migrations->items, def->migrations->n, &err) != SB_OK)
        goto out_pg;
    svc.redis = sb_redis_new(redis_url, &err);
    if (!svc.redis)
        goto out_pg;
    svc.authn = sb_authn_from_env(svc.redis, &err);
    if (!svc.authn)
        goto out_redis;
    svc.producer = sb_producer_new(brokers, &err);
    if (!svc.producer)
        goto out_authn;
    sb_job_t relay = sb_outbox_relay_job((int)sb_cfg_int("OUTBOX_POLL_MS", 100, 5, 60000));
    svc.relay = sb_jobs_start(svc.pg, &relay, 1, svc.producer, &err);
    if (!svc.relay)
        goto out_producer;
    if (def->init && def->init(&svc, &err) != SB_OK)
        goto out_relay;
    if (def->n_events) {
        sb_event_table_t events = {def->events, def->n_events, &svc};
        svc.consumer = sb_consumer_start(brokers, group, svc.pg, &events, &err);
        if (!svc.consumer)
            goto out_relay;
    }
    if (def->n_jobs && !(svc.jobs = sb_jobs_start(svc.pg, def->jobs, def->n_jobs, &svc, &err)))
        goto out_relay;
    svc.health = sb_service_health_start(&svc, (int)sb_cfg_int("HEALTH_REFRESH_MS", 5000, 100, 600000));
    svc.server = sb_server_new(addr, (int)workers);
    check_rows(def);
    sb_server_add_service_run(svc.server, def->descriptor, def->methods, def->n_methods, &svc,
                              sb_service_call);
    sb_service_add_runtime(svc.server, &svc);
    sb_server_set_authenticator(svc.server, verify_token, svc.authn);
    if (sb_server_start(svc.server, &err) != SB_OK)
        goto out_server;
    admin = sb_admin_start((int)admin_port, sb_service_ready, &svc, &err);
    if (!admin)
        goto out_server_stop;

    sb_info("%s service ready: gRPC %s, admin :%ld, database %s", def->name, addr, admin_port, dbname);
    int sig = 0;
    sigwait(&stop, &sig);
    rc = 0;
    /* The drain (docs/internals.md): /readyz and grpc.health say no first,
     * for SHUTDOWN_DELAY_MS while calls are still taken, so a load balancer
     * stops sending; then the server stops accepting and finishes the
     * running and queued calls within SHUTDOWN_GRACE_MS; the admin listener
     * answers /readyz 503 until then. */
    long delay_ms = sb_cfg_int("SHUTDOWN_DELAY_MS", 0, 0, 600000);
    sb_server_set_serving(svc.server, false);
    sb_info("signal %d: draining: /readyz 503, accepting calls for %ld ms more", sig, delay_ms);
    sb_sleep_ms(delay_ms);
    sb_server_shutdown(svc.server, grace_ms);
    sb_admin_stop(admin);
out_server_stop:
    sb_server_shutdown(svc.server, grace_ms);
out_server:
    sb_server_free(svc.server);
    if (def->fini)
        def->fini(&svc);
out_relay:
    sb_service_health_stop(svc.health); /* reads the consumer and the producer */
    sb_consumer_stop(svc.consumer);     /* first: its handlers may still write events */
    sb_jobs_stop(svc.jobs);             /* so may the service's jobs */
    sb_jobs_stop(svc.relay);            /* then publish what is left */
out_producer:
    sb_producer_free(svc.producer);
out_authn:
    sb_authn_free(svc.authn);
out_redis:
    sb_redis_free(svc.redis);
out_pg:
    sb_pg_pool_free(svc.pg);
out:
    if (rc != 0)
        sb_error("%s service failed to start: %s", def->name, err.buf);
    sb_channels_free_all();
    sb_buf_release(&err);
    sb_info("%s service stopped", def->name);
    return rc;
}
