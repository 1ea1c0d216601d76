/* Mutual TLS on the gRPC transport (sb/tls.h), in-process over loopback.
 *
 * The runner creates two PKIs with deploy/local/pki.sh before any test: the
 * platform's (CA, a certificate per service, client-test) and another CA's
 * (client-test and member again: right names, wrong issuer). Each test
 * process sets the TLS_* variables it needs.
 *
 * An identity server (a bare gRPC server using sb_tls_server_creds that
 * answers every call with sb_tls_peer_service of the call) checks who the
 * listener believes it is talking to; an sb_server (the runtime's server,
 * health service only) checks the wiring of sb_server_start and of the
 * client's channels (sb_channel_get_for and the server-name check). */
#include <criterion/criterion.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "health.pb-c.h"
#include "sb/log.h"
#include "sb/rpc.h"
#include "sb/tls.h"

#define ENV_DIR "SB_TLS_TEST_DIR"

/* ------------------------------------------------ the PKIs (runner) */

static char tmpdir[64];

ReportHook(PRE_ALL)(struct criterion_test_set *tests)
{
    (void)tests;
    /* this file is <root>/tests/integration/test_tls.c */
    char root[512];
    snprintf(root, sizeof root, "%s", __FILE__);
    char *cut = strstr(root, "/tests/integration/");
    if (!cut)
        return;
    *cut = 0;
    strcpy(tmpdir, "/tmp/sb-test-tls-XXXXXX");
    if (!mkdtemp(tmpdir))
        return;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "'%s/deploy/local/pki.sh' ensure '%s/pki' && '%s/deploy/local/pki.sh' issue '%s/other' "
             "client-test member",
             root, tmpdir, root, tmpdir);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_tls: %s failed\n", cmd);
        return;
    }
    setenv(ENV_DIR, tmpdir, 1); /* for the test processes forked next */
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    if (!tmpdir[0])
        return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "test_tls: cannot remove %s\n", tmpdir);
}

/* "<dir>/<pki>/<name>/tls.crt" and the like, in static storage per call site */
static const char *pki_path(char *out, size_t n, const char *pki, const char *file)
{
    snprintf(out, n, "%s/%s/%s", getenv(ENV_DIR), pki, file);
    return out;
}

/* Sets TLS_CA_FILE to pki's CA and TLS_CERT_FILE/TLS_KEY_FILE to name's
 * certificate in cert_pki (name NULL: no client certificate). */
static void use_tls(const char *ca_pki, const char *cert_pki, const char *name)
{
    char p[512];
    unsetenv("GRPC_INSECURE");
    setenv("TLS_CA_FILE", pki_path(p, sizeof p, ca_pki, "ca.crt"), 1);
    if (!name) {
        unsetenv("TLS_CERT_FILE");
        unsetenv("TLS_KEY_FILE");
        return;
    }
    char f[128];
    snprintf(f, sizeof f, "%s/tls.crt", name);
    setenv("TLS_CERT_FILE", pki_path(p, sizeof p, cert_pki, f), 1);
    snprintf(f, sizeof f, "%s/tls.key", name);
    setenv("TLS_KEY_FILE", pki_path(p, sizeof p, cert_pki, f), 1);
}

/* ------------------------------------------------ the identity server */

static grpc_server *id_srv;
static grpc_completion_queue *id_cq;
static pthread_t id_thread;
static int id_port;

/* Answers every call with the caller's service name ("" when none). */
static void *id_loop(void *arg)
{
    (void)arg;
    for (;;) {
        grpc_call *call = NULL;
        grpc_call_details details;
        grpc_metadata_array md;
        grpc_call_details_init(&details);
        grpc_metadata_array_init(&md);
        grpc_server_request_call(id_srv, &call, &details, &md, id_cq, id_cq, (void *)1);
        grpc_event ev = grpc_completion_queue_next(id_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        bool got = ev.type == GRPC_OP_COMPLETE && ev.success;
        if (got) {
            sb_arena_t *a = sb_arena_new();
            const char *peer = sb_tls_peer_service(call, a);
            grpc_slice s = grpc_slice_from_copied_string(peer ? peer : "");
            grpc_byte_buffer *out = grpc_raw_byte_buffer_create(&s, 1);
            grpc_slice_unref(s);
            grpc_byte_buffer *in = NULL;
            int cancelled = 0;
            grpc_op ops[5];
            memset(ops, 0, sizeof ops);
            ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
            ops[1].op = GRPC_OP_RECV_MESSAGE;
            ops[1].data.recv_message.recv_message = &in;
            ops[2].op = GRPC_OP_SEND_MESSAGE;
            ops[2].data.send_message.send_message = out;
            ops[3].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
            ops[3].data.send_status_from_server.status = GRPC_STATUS_OK;
            ops[4].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
            ops[4].data.recv_close_on_server.cancelled = &cancelled;
            grpc_call_start_batch(call, ops, 5, (void *)2, NULL);
            grpc_completion_queue_next(id_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            if (in)
                grpc_byte_buffer_destroy(in);
            grpc_byte_buffer_destroy(out);
            grpc_call_unref(call);
            sb_arena_free(a);
        }
        grpc_call_details_destroy(&details);
        grpc_metadata_array_destroy(&md);
        if (!got)
            break;
    }
    return NULL;
}

static void id_start(void)
{
    sb_buf_t err = SB_BUF_INIT;
    grpc_server_credentials *creds = sb_tls_server_creds(&err);
    cr_assert_not_null(creds, "%s", err.buf);
    id_srv = grpc_server_create(NULL, NULL);
    id_cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(id_srv, id_cq, NULL);
    id_port = grpc_server_add_http2_port(id_srv, "127.0.0.1:0", creds);
    grpc_server_credentials_release(creds);
    cr_assert_gt(id_port, 0);
    grpc_server_start(id_srv);
    pthread_create(&id_thread, NULL, id_loop, NULL);
    sb_buf_release(&err);
}

static void id_stop(void)
{
    grpc_completion_queue *scq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_server_shutdown_and_notify(id_srv, scq, (void *)3);
    grpc_server_cancel_all_calls(id_srv);
    grpc_completion_queue_pluck(scq, (void *)3, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    pthread_join(id_thread, NULL);
    grpc_server_destroy(id_srv);
    grpc_completion_queue_shutdown(id_cq);
    while (grpc_completion_queue_next(id_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(id_cq);
    grpc_completion_queue_destroy(scq);
}

/* ------------------------------------------------ a client on its own channel */

/* A channel of its own (no connection shared with another test channel) to
 * 127.0.0.1:port with creds (taken), checking the server's name `name`. */
static grpc_channel *channel(int port, grpc_channel_credentials *creds, const char *name)
{
    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    grpc_arg args[2] = {
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
         .value.integer = 1},
        {.type = GRPC_ARG_STRING,
         .key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
         .value.string = (char *)name},
    };
    grpc_channel_args ca = {.num_args = name ? 2 : 1, .args = args};
    grpc_channel *ch = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    return ch;
}

/* The channel credentials sb_tls_channel_creds makes of the environment. */
static grpc_channel_credentials *env_creds(void)
{
    sb_buf_t err = SB_BUF_INIT;
    grpc_channel_credentials *c = sb_tls_channel_creds(&err);
    cr_assert_not_null(c, "%s", err.buf);
    sb_buf_release(&err);
    return c;
}

/* One unary call of `path` with an empty request; the status, and the
 * response bytes in resp. */
static grpc_status_code call(grpc_channel *ch, const char *path, sb_buf_t *resp)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice method = grpc_slice_from_copied_string(path);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(5000, GPR_TIMESPAN));
    grpc_call *c =
        grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL, deadline, NULL);
    grpc_slice_unref(method);
    grpc_slice empty = grpc_empty_slice();
    grpc_byte_buffer *req = grpc_raw_byte_buffer_create(&empty, 1);
    grpc_byte_buffer *rbb = NULL;
    grpc_metadata_array init_md, trail_md;
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = req;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &rbb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    cr_assert_eq(grpc_call_start_batch(c, ops, 6, ops, NULL), GRPC_CALL_OK);
    grpc_completion_queue_pluck(cq, ops, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (rbb) {
        grpc_byte_buffer_reader r;
        grpc_byte_buffer_reader_init(&r, rbb);
        grpc_slice all = grpc_byte_buffer_reader_readall(&r);
        sb_buf_add(resp, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all));
        grpc_slice_unref(all);
        grpc_byte_buffer_reader_destroy(&r);
        grpc_byte_buffer_destroy(rbb);
    }
    grpc_byte_buffer_destroy(req);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    grpc_call_unref(c);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    return status;
}

/* Who the identity server says the caller is; the call's status in *st. */
static grpc_status_code whoami(grpc_channel_credentials *creds, const char *server_name, sb_buf_t *who)
{
    grpc_channel *ch = channel(id_port, creds, server_name);
    sb_buf_reset(who);
    grpc_status_code st = call(ch, "/sb.test.Id/WhoAmI", who);
    grpc_channel_destroy(ch);
    return st;
}

static void setup(void)
{
    sb_log_init("test-tls");
    sb_log_set_level(SB_LOG_ERROR);
    cr_assert_not_null(getenv(ENV_DIR), "the PKIs were not created (see the runner's stderr)");
    grpc_init();
}

static void teardown(void)
{
    sb_channels_free_all();
    grpc_shutdown();
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 60);

Test(tls, peers_are_known_by_their_certificate_or_not_at_all)
{
    use_tls("pki", "pki", "member"); /* the listener is "member" */
    id_start();
    sb_buf_t who = SB_BUF_INIT;

    /* a service certificate of the platform CA: known by its name */
    use_tls("pki", "pki", "client-test");
    cr_assert_eq(whoami(env_creds(), "member", &who), GRPC_STATUS_OK);
    cr_assert_str_eq(who.buf, "client-test");
    /* as the gateway */
    use_tls("pki", "pki", "gateway");
    cr_assert_eq(whoami(env_creds(), "member", &who), GRPC_STATUS_OK);
    cr_assert_str_eq(who.buf, "gateway");

    /* server-side TLS only (an end-user client): gets through, no identity */
    use_tls("pki", NULL, NULL);
    cr_assert_eq(whoami(env_creds(), "member", &who), GRPC_STATUS_OK);
    cr_assert_str_eq(who.buf, "");

    /* a certificate of another CA, even with the right name: handshake refused */
    use_tls("pki", "other", "client-test");
    cr_assert_eq(whoami(env_creds(), "member", &who), GRPC_STATUS_UNAVAILABLE);
    cr_assert_str_eq(who.buf, "");

    /* plaintext to the TLS port: fails */
    cr_assert_eq(whoami(grpc_insecure_credentials_create(), NULL, &who), GRPC_STATUS_UNAVAILABLE);

    /* a client that trusts another CA does not accept the server */
    use_tls("other", "other", "client-test");
    cr_assert_eq(whoami(env_creds(), "member", &who), GRPC_STATUS_UNAVAILABLE);

    /* the server must carry the expected name: a "payment" server is not "member" */
    use_tls("pki", "pki", "client-test");
    cr_assert_eq(whoami(env_creds(), "payment", &who), GRPC_STATUS_UNAVAILABLE);
    /* without a name, the address is checked: 127.0.0.1 is an IP SAN of every certificate */
    cr_assert_eq(whoami(env_creds(), NULL, &who), GRPC_STATUS_OK);

    sb_buf_release(&who);
    id_stop();
}

/* Health/Check through the runtime's client (sb_rpc_call on a cached channel). */
static sb_status_t health(sb_channel_t *ch, sb_buf_t *err)
{
    sb_arena_t *a = sb_arena_new();
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    Grpc__Health__V1__HealthCheckResponse *resp = NULL;
    sb_call_opts_t o = {.timeout_ms = 5000};
    sb_buf_reset(err);
    sb_status_t st = sb_rpc_call(ch, &grpc__health__v1__health__descriptor, "Check", &req.base, a,
                                 (ProtobufCMessage **)&resp, &o, err);
    if (st == SB_OK)
        cr_assert_eq(resp->status, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    sb_arena_free(a);
    return st;
}

Test(tls, the_runtime_server_and_client_speak_tls)
{
    use_tls("pki", "pki", "member");
    sb_server_t *srv = sb_server_new("127.0.0.1:0", 2);
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(sb_server_start(srv, &err), SB_OK, "%s", err.buf);
    int port = sb_server_port(srv);
    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);

    /* the runtime's client, with a service certificate, expecting "member" */
    use_tls("pki", "pki", "client-test");
    cr_assert_eq(health(sb_channel_get_for(target, "member"), &err), SB_OK, "%s", err.buf);
    /* expecting another service at that address: refused */
    cr_assert_eq(health(sb_channel_get_for(target, "auth"), &err), SB_UNAVAILABLE);
    /* by address only */
    cr_assert_eq(health(sb_channel_get(target), &err), SB_OK, "%s", err.buf);

    /* plaintext to the runtime's TLS port fails */
    sb_buf_t out = SB_BUF_INIT;
    grpc_channel *ch = channel(port, grpc_insecure_credentials_create(), NULL);
    cr_assert_eq(call(ch, "/grpc.health.v1.Health/Check", &out), GRPC_STATUS_UNAVAILABLE);
    grpc_channel_destroy(ch);
    /* a certificate of another CA is refused; no certificate gets through */
    use_tls("pki", "other", "client-test");
    ch = channel(port, env_creds(), "member");
    cr_assert_eq(call(ch, "/grpc.health.v1.Health/Check", &out), GRPC_STATUS_UNAVAILABLE);
    grpc_channel_destroy(ch);
    use_tls("pki", NULL, NULL);
    ch = channel(port, env_creds(), "member");
    cr_assert_eq(call(ch, "/grpc.health.v1.Health/Check", &out), GRPC_STATUS_OK);
    grpc_channel_destroy(ch);

    sb_buf_release(&out);
    sb_buf_release(&err);
    sb_server_shutdown(srv, 1000);
    sb_server_free(srv);
}

/* Copies src over dst the way a renewal does (a new file renamed into place). */
static void replace_file(const char *src, const char *dst)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s.new' && mv -f '%s.new' '%s'", src, dst, dst, dst);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

Test(tls, a_renewed_listener_certificate_is_served_without_a_restart)
{
    /* the listener's files: a copy of member's, so the test can replace them */
    char dir[600], cert[700], key[700], p[512];
    snprintf(dir, sizeof dir, "%s/renew-%d", getenv(ENV_DIR), (int)getpid());
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(cert, sizeof cert, "%s/tls.crt", dir);
    snprintf(key, sizeof key, "%s/tls.key", dir);
    replace_file(pki_path(p, sizeof p, "pki", "member/tls.crt"), cert);
    replace_file(pki_path(p, sizeof p, "pki", "member/tls.key"), key);
    use_tls("pki", NULL, NULL);
    setenv("TLS_CERT_FILE", cert, 1);
    setenv("TLS_KEY_FILE", key, 1);
    id_start();

    sb_buf_t who = SB_BUF_INIT;
    use_tls("pki", "pki", "client-test");
    cr_assert_eq(whoami(env_creds(), "member", &who), GRPC_STATUS_OK);
    cr_assert_str_eq(who.buf, "client-test");

    /* "renewed" by another CA: new connections get the new certificate, so a
     * client of the platform CA now refuses the server... */
    replace_file(pki_path(p, sizeof p, "other", "member/tls.key"), key);
    replace_file(pki_path(p, sizeof p, "other", "member/tls.crt"), cert);
    cr_assert_eq(whoami(env_creds(), "member", &who), GRPC_STATUS_UNAVAILABLE);
    /* ...and a client of the other CA accepts it (its certificate is still
     * verified against the listener's CA, the platform's, unchanged) */
    use_tls("other", "pki", "client-test");
    cr_assert_eq(whoami(env_creds(), "member", &who), GRPC_STATUS_OK);
    cr_assert_str_eq(who.buf, "client-test");

    /* a broken renewal (garbage key) keeps the last good certificate */
    FILE *f = fopen(key, "w");
    fputs("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n", f);
    fclose(f);
    cr_assert_eq(whoami(env_creds(), "member", &who), GRPC_STATUS_OK);

    sb_buf_release(&who);
    id_stop();
}

Test(tls, configuration_errors_and_plaintext_mode)
{
    sb_buf_t err = SB_BUF_INIT;
    char p[512];
    /* a listener needs its certificate and key */
    use_tls("pki", NULL, NULL);
    cr_assert_null(sb_tls_server_creds(&err));
    cr_assert(strstr(err.buf, "TLS_CERT_FILE is not set"), "%s", err.buf);
    sb_server_t *srv = sb_server_new("127.0.0.1:0", 1);
    sb_buf_reset(&err);
    cr_assert_eq(sb_server_start(srv, &err), SB_UNAVAILABLE);
    cr_assert(strstr(err.buf, "TLS_CERT_FILE"), "%s", err.buf);
    sb_server_free(srv);
    /* an unreadable file is named */
    use_tls("pki", "pki", "member");
    setenv("TLS_KEY_FILE", "/nonexistent/tls.key", 1);
    sb_buf_reset(&err);
    cr_assert_null(sb_tls_server_creds(&err));
    cr_assert(strstr(err.buf, "/nonexistent/tls.key"), "%s", err.buf);
    /* a client certificate without its key */
    use_tls("pki", NULL, NULL);
    setenv("TLS_CERT_FILE", pki_path(p, sizeof p, "pki", "client-test/tls.crt"), 1);
    sb_buf_reset(&err);
    cr_assert_null(sb_tls_channel_creds(&err));
    cr_assert(strstr(err.buf, "go together"), "%s", err.buf);
    /* a channel the runtime cannot secure fails its calls, it does not fall back to plaintext */
    cr_assert_eq(health(sb_channel_get("127.0.0.1:1"), &err), SB_UNAVAILABLE);

    /* GRPC_INSECURE=1: plaintext on both sides, whatever TLS_* say */
    cr_assert_not(sb_tls_insecure());
    setenv("GRPC_INSECURE", "1", 1);
    cr_assert(sb_tls_insecure());
    srv = sb_server_new("127.0.0.1:0", 1);
    sb_buf_reset(&err);
    cr_assert_eq(sb_server_start(srv, &err), SB_OK, "%s", err.buf);
    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", sb_server_port(srv));
    cr_assert_eq(health(sb_channel_get_for(target, "member"), &err), SB_OK, "%s", err.buf);
    sb_server_shutdown(srv, 1000);
    sb_server_free(srv);
    sb_buf_release(&err);
}
