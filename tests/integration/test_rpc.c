/* The gRPC runtime end to end: a server and a client in one process, over
 * loopback with mutual TLS (the tests' PKI: the process's own client-test
 * certificate on both ends, sb_test_pki.h). Covers the round trip with the
 * identity of the verified access token and of the client certificate and
 * the trace metadata, a token refused before the handler runs, deadline
 * expiry, a malformed payload (INVALID_ARGUMENT, server keeps serving),
 * UNIMPLEMENTED, handler statuses, and the standard health service. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "echo.pb-c.h"
#include "health.pb-c.h"
#include "sb/log.h"
#include "sb/rpc.h"
#include "sb/util.h"
#include "sb_test_pki.h"

static sb_server_t *srv;
static sb_channel_t *ch;

static sb_status_t echo(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Test__EchoRequest *req = in;
    Sb__Test__EchoReply *resp = out;
    if (req->sleep_ms > 0)
        usleep((useconds_t)req->sleep_ms * 1000);
    if (req->fail_code)
        return sb_rpc_fail(ctx, (sb_status_t)req->fail_code, "asked to fail with %d", req->fail_code);
    resp->text = sb_arena_strdup(ctx->arena, req->text);
    resp->user_id = (char *)ctx->user_id;
    resp->user_role = (char *)ctx->user_role;
    resp->trace_id = (char *)ctx->trace_id;
    resp->caller_service = (char *)ctx->caller_service;
    return SB_OK;
}

static const sb_rpc_method_t methods[] = {{"Echo", echo}};

static void setup(void)
{
    sb_log_init("test-rpc");
    sb_log_set_level(SB_LOG_WARN);
    srv = sb_server_new("127.0.0.1:0", 2);
    sb_server_add_service(srv, &sb__test__echo_service__descriptor, methods, 1, NULL);
    sb_test_server_authn(srv);
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(sb_server_start(srv, &err), SB_OK, "%s", err.buf);
    sb_buf_release(&err);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", sb_server_port(srv));
    ch = sb_channel_get(target);
}

static void teardown(void)
{
    sb_channels_free_all();
    sb_server_shutdown(srv, 1000);
    sb_server_free(srv);
    sb_test_authn_free();
}

static sb_status_t call_echo(const Sb__Test__EchoRequest *req, const sb_call_opts_t *opts, sb_arena_t *a,
                             Sb__Test__EchoReply **resp, sb_buf_t *err)
{
    return sb_rpc_call(ch, &sb__test__echo_service__descriptor, "Echo", &req->base, a,
                       (ProtobufCMessage **)resp, opts, err);
}

TestSuite(rpc, .init = setup, .fini = teardown, .timeout = 60);

Test(rpc, round_trip_carries_identity_and_trace)
{
    sb_arena_t *a = sb_arena_new();
    sb_buf_t err = SB_BUF_INIT;
    Sb__Test__EchoRequest req = SB__TEST__ECHO_REQUEST__INIT;
    req.text = "hello seats";
    sb_call_opts_t o = {
        .timeout_ms = 5000, .trace_id = "trace-123", .token = sb_test_token(a, "u-1", "PLANNER")};
    Sb__Test__EchoReply *resp;
    cr_assert_eq(call_echo(&req, &o, a, &resp, &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(resp->text, "hello seats");
    cr_assert_str_eq(resp->user_id, "u-1");
    cr_assert_str_eq(resp->user_role, "PLANNER");
    cr_assert_str_eq(resp->trace_id, "trace-123");
    cr_assert_str_eq(resp->caller_service, "client-test", "the client certificate's name");

    /* no token: anonymous */
    sb_buf_reset(&err);
    cr_assert_eq(call_echo(&req, NULL, a, &resp, &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(resp->user_id, "");
    cr_assert_str_eq(resp->user_role, "");

    /* another certificate: another calling service */
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", sb_server_port(srv));
    sb_buf_reset(&err);
    cr_assert_eq(sb_rpc_call(sb_test_channel_as(target, NULL, "payment"),
                             &sb__test__echo_service__descriptor, "Echo", &req.base, a,
                             (ProtobufCMessage **)&resp, &o, &err),
                 SB_OK, "%s", err.buf);
    cr_assert_str_eq(resp->caller_service, "payment");
    cr_assert_str_eq(resp->user_id, "u-1");
    sb_buf_release(&err);
    sb_arena_free(a);
}

Test(rpc, a_bad_token_is_refused_before_the_handler)
{
    sb_arena_t *a = sb_arena_new();
    sb_buf_t err = SB_BUF_INIT;
    Sb__Test__EchoRequest req = SB__TEST__ECHO_REQUEST__INIT;
    req.text = "let me in";
    Sb__Test__EchoReply *resp = NULL;
    int64_t now = sb_now_ms() / 1000;
    sb_jwt_claims_t c = {.iat = now - 1000, .exp = now - 100, .sub = "u-1", .role = "ADMIN"};
    sb_uuid_v4(c.jti);
    sb_call_opts_t o = {.token = sb_test_token_claims(a, &c)};
    cr_assert_eq(call_echo(&req, &o, a, &resp, &err), SB_UNAUTHENTICATED, "expired: %s", err.buf);
    cr_assert_null(resp);
    o.token = "not.a.token";
    sb_buf_reset(&err);
    cr_assert_eq(call_echo(&req, &o, a, &resp, &err), SB_UNAUTHENTICATED, "garbage: %s", err.buf);
    sb_buf_release(&err);
    sb_arena_free(a);
}

Test(rpc, deadline_expires_then_server_still_serves)
{
    sb_arena_t *a = sb_arena_new();
    sb_buf_t err = SB_BUF_INIT;
    Sb__Test__EchoRequest req = SB__TEST__ECHO_REQUEST__INIT;
    req.text = "slow";
    req.sleep_ms = 800;
    sb_call_opts_t o = {.timeout_ms = 100};
    Sb__Test__EchoReply *resp;
    cr_assert_eq(call_echo(&req, &o, a, &resp, &err), SB_DEADLINE_EXCEEDED, "%s", err.buf);
    req.sleep_ms = 0;
    req.text = "fast";
    sb_buf_reset(&err);
    cr_assert_eq(call_echo(&req, NULL, a, &resp, &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(resp->text, "fast");
    sb_buf_release(&err);
    sb_arena_free(a);
}

Test(rpc, malformed_payload_is_invalid_argument_and_server_keeps_serving)
{
    /* field 1 (string) announcing 100 bytes but carrying 3: not a message */
    static const unsigned char junk[] = {0x0a, 0x64, 'a', 'b', 'c'};
    sb_buf_t resp_bytes = SB_BUF_INIT, err = SB_BUF_INIT;
    sb_status_t st =
        sb_rpc_call_raw(ch, "/sb.test.EchoService/Echo", junk, sizeof junk, &resp_bytes, NULL, &err);
    cr_assert_eq(st, SB_INVALID_ARGUMENT, "got %s: %s", sb_status_name(st), err.buf);
    cr_assert(strstr(err.buf, "malformed") != NULL, "message: %s", err.buf);
    cr_assert_eq(resp_bytes.len, 0);

    for (int i = 0; i < 20; i++) { /* and keeps serving, repeatedly */
        sb_arena_t *a = sb_arena_new();
        Sb__Test__EchoRequest req = SB__TEST__ECHO_REQUEST__INIT;
        req.text = "still here";
        Sb__Test__EchoReply *resp;
        sb_buf_reset(&err);
        cr_assert_eq(call_echo(&req, NULL, a, &resp, &err), SB_OK, "%s", err.buf);
        cr_assert_str_eq(resp->text, "still here");
        sb_arena_free(a);
    }
    sb_buf_release(&resp_bytes);
    sb_buf_release(&err);
}

Test(rpc, handler_status_and_message_reach_the_client)
{
    sb_arena_t *a = sb_arena_new();
    sb_buf_t err = SB_BUF_INIT;
    Sb__Test__EchoRequest req = SB__TEST__ECHO_REQUEST__INIT;
    req.fail_code = SB_NOT_FOUND;
    Sb__Test__EchoReply *resp;
    cr_assert_eq(call_echo(&req, NULL, a, &resp, &err), SB_NOT_FOUND);
    cr_assert_str_eq(err.buf, "asked to fail with 5");
    cr_assert_null(resp);
    sb_buf_release(&err);
    sb_arena_free(a);
}

Test(rpc, unregistered_and_unknown_methods_are_unimplemented)
{
    sb_arena_t *a = sb_arena_new();
    sb_buf_t err = SB_BUF_INIT;
    Sb__Test__EchoRequest req = SB__TEST__ECHO_REQUEST__INIT;
    ProtobufCMessage *resp;
    cr_assert_eq(sb_rpc_call(ch, &sb__test__echo_service__descriptor, "NotImplemented", &req.base, a,
                             &resp, NULL, &err),
                 SB_UNIMPLEMENTED);
    sb_buf_t raw = SB_BUF_INIT;
    sb_buf_reset(&err);
    cr_assert_eq(sb_rpc_call_raw(ch, "/sb.test.EchoService/Nope", "", 0, &raw, NULL, &err),
                 SB_UNIMPLEMENTED);
    sb_buf_release(&raw);
    sb_buf_release(&err);
    sb_arena_free(a);
}

Test(rpc, health_check_serving_then_not_serving)
{
    sb_arena_t *a = sb_arena_new();
    sb_buf_t err = SB_BUF_INIT;
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    Grpc__Health__V1__HealthCheckResponse *resp;
    req.service = "sb.test.EchoService";
    cr_assert_eq(sb_rpc_call(ch, &grpc__health__v1__health__descriptor, "Check", &req.base, a,
                             (ProtobufCMessage **)&resp, NULL, &err),
                 SB_OK, "%s", err.buf);
    cr_assert_eq(resp->status, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    req.service = "no.such.Service";
    cr_assert_eq(sb_rpc_call(ch, &grpc__health__v1__health__descriptor, "Check", &req.base, a,
                             (ProtobufCMessage **)&resp, NULL, &err),
                 SB_NOT_FOUND);
    sb_server_set_serving(srv, false);
    req.service = "";
    cr_assert_eq(sb_rpc_call(ch, &grpc__health__v1__health__descriptor, "Check", &req.base, a,
                             (ProtobufCMessage **)&resp, NULL, &err),
                 SB_OK);
    cr_assert_eq(resp->status, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
    sb_buf_release(&err);
    sb_arena_free(a);
}
