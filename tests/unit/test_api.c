/* The API table (sb/api.h, generated from the .proto options) and its
 * readers (common/src/api.c): every RPC states a policy, every REST path of
 * SPEC §3 is there with its verb, the access decision, the REST matcher.
 * Cases are data: one row per path, per caller, per request. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "member.pb-c.h"
#include "sb/api.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static bool admits_someone(const sb_api_access_t *a)
{
    return a->public_ || (a->roles & SB_ROLE_BITS_ALL) || a->owner_field ||
           (a->services && a->services[0]);
}

/* ------------------------------------------------- every RPC has a policy */

Test(api, every_rpc_of_every_service_states_a_policy)
{
    size_t rpcs = 0;
    for (size_t s = 0; s < sb_api_n_services; s++) {
        const ProtobufCServiceDescriptor *svc = sb_api_services[s];
        if (!strcmp(svc->name, "grpc.health.v1.Health"))
            continue; /* the runtime's own, open to all */
        for (unsigned i = 0; i < svc->n_methods; i++) {
            const ProtobufCMethodDescriptor *md = &svc->methods[i];
            const sb_api_method_t *m = sb_api_find(svc->name, md->name);
            cr_assert_not_null(m, "%s/%s has no row in the API table", svc->name, md->name);
            cr_expect(admits_someone(&m->access),
                      "%s/%s: its policy admits no one; give it (sb.api.method) access "
                      "(public, roles, signed_in, owner_field or services)",
                      svc->name, md->name);
            cr_expect_eq(m->service, svc);
            cr_expect_eq(m->rpc->input, md->input, "%s/%s", svc->name, md->name);
            cr_expect_eq(m->rpc->output, md->output, "%s/%s", svc->name, md->name);
            rpcs++;
        }
    }
    cr_expect_eq(rpcs, sb_api_n_methods, "a row for every RPC, and no other");
    cr_expect_gt(rpcs, 30);
}

/* The names a row uses are fields of its request: path variables, header
 * bindings, the owner field; a dispatch variable is in every path. */
Test(api, every_row_names_existing_fields)
{
    for (size_t i = 0; i < sb_api_n_methods; i++) {
        const sb_api_method_t *m = &sb_api_methods[i];
        const ProtobufCMessageDescriptor *in = m->rpc->input;
        cr_expect(m->ok_status == 200 || m->ok_status == 201, "%s", m->rpc->name);
        /* no backend: an rpc every service serves (proto/runtime.proto), sent
         * to the service its dispatch variable names */
        cr_expect((m->backend && *m->backend) || (!m->backend && m->dispatch_var), "%s", m->rpc->name);
        cr_expect(m->summary && (*m->summary || !m->n_http), "%s/%s has no summary (leading comment)",
                  m->service->name, m->rpc->name);
        for (size_t h = 0; h < m->n_http; h++) {
            const char *p = m->http[h].path;
            while ((p = strchr(p, '{'))) {
                const char *e = strchr(p, '}');
                cr_assert_not_null(e);
                char field[64] = {0};
                memcpy(field, p + 1, (size_t)(e - p - 1));
                cr_expect_not_null(protobuf_c_message_descriptor_get_field_by_name(in, field),
                                   "%s %s: {%s} is not a field of %s", m->http[h].verb, m->http[h].path,
                                   field, in->name);
                p = e;
            }
            if (m->dispatch_var) {
                char var[64];
                snprintf(var, sizeof var, "{%s}", m->dispatch_var);
                cr_expect(strstr(m->http[h].path, var), "%s: dispatch_var not in the path",
                          m->rpc->name);
            }
        }
        for (size_t h = 0; h < m->n_headers; h++)
            cr_expect_not_null(protobuf_c_message_descriptor_get_field_by_name(in, m->headers[h].field),
                               "%s: header %s", m->rpc->name, m->headers[h].header);
        if (m->access.owner_field) {
            const ProtobufCFieldDescriptor *f =
                protobuf_c_message_descriptor_get_field_by_name(in, m->access.owner_field);
            cr_expect(f && f->type == PROTOBUF_C_TYPE_STRING, "%s: owner_field", m->rpc->name);
        }
    }
}

/* ------------------------------------------------------- the REST paths */

struct path_case {
    const char *verb, *path; /* the binding, proto field names */
    const char *rpc;         /* the method it calls */
    const char *backend;     /* NULL: dispatched by a path variable; "*": every
                                service's (one row, no backend) */
};

/* SPEC §3's table, then the extra paths routes.c served before the table. */
static const struct path_case rest_paths[] = {
    {"POST", "/signup", "Signup", "member"},
    {"POST", "/login", "Login", "auth"},
    {"POST", "/logout", "Logout", "auth"},
    {"GET", "/members/{user_id}", "GetMember", "member"},
    {"PUT", "/members/{user_id}", "UpdateMember", "member"},
    {"DELETE", "/members/{user_id}", "DeleteMember", "member"},
    {"POST", "/performances", "CreatePerformance", "performance"},
    {"PUT", "/performances/{performance_id}", "UpdatePerformance", "performance"},
    {"GET", "/performances", "ListPerformances", "performance"},
    {"GET", "/performances/{performance_id}/reservations", "GetPerformanceReservations", "reservation"},
    {"POST", "/performances/{performance_id}/cancel", "CancelPerformance", "performance"},
    {"GET", "/reservations", "ListBookable", "reservation"},
    {"POST", "/reservations", "CreateReservation", "reservation"},
    {"GET", "/reservations/{reservation_id}", "GetReservation", "reservation"},
    {"PUT", "/reservations/{reservation_id}", "UpdateReservation", "reservation"},
    {"DELETE", "/reservations/{reservation_id}", "CancelReservation", "reservation"},
    {"GET", "/reservations/{reservation_id}/payment", "GetReservationPayment", "reservation"},
    {"POST", "/payments", "CreatePayment", "payment"},
    {"PUT", "/payments/{payment_id}", "UpdatePayment", "payment"},
    {"DELETE", "/payments/{payment_id}", "CancelPayment", "payment"},
    {"POST", "/events/reservations", "ReplayEvents", "reservation"},
    {"POST", "/events/payments", "ReplayEvents", "payment"},
    {"POST", "/events/cancellations", "ReplayCancellationEvents", "reservation"},
    {"POST", "/events/{service_id}", "DeliverEvent", NULL},
    {"POST", "/auth", "Authorize", "auth"},
    {"POST", "/notifications/reservations", "SendReservationNotice", "notification"},
    {"POST", "/notifications/payments", "SendPaymentNotice", "notification"},
    {"POST", "/notifications/cancellations", "SendCancellationNotice", "notification"},
    /* beyond the table */
    {"GET", "/performances/{performance_id}", "GetPerformance", "performance"},
    {"POST", "/performances/{performance_id}/approve", "ApprovePerformance", "performance"},
    {"POST", "/performances/{performance_id}/reject", "RejectPerformance", "performance"},
    {"GET", "/schedules/{schedule_id}/seats", "GetSeatMap", "reservation"},
    {"POST", "/token/refresh", "Refresh", "auth"},
    {"GET", "/admin/reservations", "ListReservations", "reservation"},
    {"GET", "/payments", "ListPayments", "payment"},
    {"GET", "/notifications", "ListNotifications", "notification"},
    {"GET", "/admin/audit", "ListAdminAudit", "auth"},
    /* the runtime's, in every service */
    {"GET", "/admin/dead-letters/{service_id}", "ListDeadLetters", "*"},
    {"POST", "/admin/dead-letters/{service_id}/{id}/replay", "ReplayDeadLetter", "*"},
};

Test(api, every_documented_rest_path_is_bound)
{
    for (size_t c = 0; c < N(rest_paths); c++) {
        const struct path_case *pc = &rest_paths[c];
        size_t hits = 0;
        for (size_t i = 0; i < sb_api_n_methods; i++) {
            const sb_api_method_t *m = &sb_api_methods[i];
            for (size_t h = 0; h < m->n_http; h++) {
                if (strcmp(m->http[h].path, pc->path) != 0 || strcmp(m->http[h].verb, pc->verb) != 0)
                    continue;
                hits++;
                cr_expect_str_eq(m->rpc->name, pc->rpc, "%s %s", pc->verb, pc->path);
                bool every = pc->backend && !strcmp(pc->backend, "*");
                if (every)
                    cr_expect(!m->backend && m->dispatch_var, "%s %s", pc->verb, pc->path);
                else if (pc->backend)
                    cr_expect_str_eq(m->backend, pc->backend, "%s %s", pc->verb, pc->path);
                else
                    cr_expect_not_null(m->dispatch_var, "%s %s", pc->verb, pc->path);
            }
        }
        cr_expect(pc->backend ? hits == 1 : hits >= 5, "%s %s: %zu bindings", pc->verb, pc->path, hits);
    }
}

Test(api, flags_from_the_options)
{
    const sb_api_method_t *m = sb_api_find("sb.reservation.ReservationService", "CreateReservation");
    cr_assert_not_null(m);
    cr_expect_eq(m->ok_status, 201);
    cr_expect(m->idempotent);
    cr_assert_eq(m->n_headers, 1);
    cr_expect_str_eq(m->headers[0].header, "Idempotency-Key");
    cr_expect_str_eq(m->headers[0].field, "idempotency_key");
    cr_expect_str_eq(m->summary, "Hold seats (Idempotency-Key honoured)");
    m = sb_api_find("sb.auth.AuthService", "Login");
    cr_assert_not_null(m);
    cr_expect(m->rate_limited && m->access.public_ && m->ok_status == 200 && !m->idempotent);
    m = sb_api_find("sb.member.MemberService", "CheckCredentials");
    cr_assert_not_null(m);
    cr_expect_eq(m->n_http, 0, "not on the REST API");
    cr_assert_not_null(m->access.services);
    cr_expect_str_eq(m->access.services[0], "auth");
    cr_expect_null(m->access.services[1]);
    cr_expect_eq(sb_api_find_path("/sb.member.MemberService/GetMember"),
                 sb_api_find("sb.member.MemberService", "GetMember"));
    cr_expect_null(sb_api_find_path("/grpc.health.v1.Health/Check"));
    cr_expect_null(sb_api_find_path("/sb.member.MemberService/Nope"));
    cr_expect_null(sb_api_find_path("sb.member.MemberService/GetMember"));
    cr_expect_null(sb_api_find_path("/GetMember"));
    cr_expect_null(sb_api_find_path(""));
    cr_expect_null(sb_api_find_path(NULL));
}

/* -------------------------------------------------------- authorization */

static const char *const auth_only[] = {"auth", NULL};
static const char *const two_services[] = {"performance", "reservation", NULL};

static const sb_api_method_t pol_public = {.access = {.public_ = true}};
static const sb_api_method_t pol_signed_in = {.access = {.roles = SB_ROLE_BITS_ALL}};
static const sb_api_method_t pol_admin = {.access = {.roles = SB_ROLE_BIT_ADMIN}};
static const sb_api_method_t pol_planner_admin = {
    .access = {.roles = SB_ROLE_BIT_PLANNER | SB_ROLE_BIT_ADMIN}};
static const sb_api_method_t pol_self_admin = {
    .access = {.roles = SB_ROLE_BIT_ADMIN, .owner_field = "user_id"}};
static const sb_api_method_t pol_self = {
    .access = {.owner_field = "user_id", .refusal = "only your own"}};
static const sb_api_method_t pol_service = {.access = {.services = auth_only}};
static const sb_api_method_t pol_planner_or_services = {
    .access = {.roles = SB_ROLE_BIT_PLANNER, .services = two_services}};
static const sb_api_method_t pol_nothing = {.access = {0}};

#define ALICE "0b6f2f7e-3c1d-4f6a-9a51-1e2d3c4b5a69"
#define ALICE_UPPER "0B6F2F7E-3C1D-4F6A-9A51-1E2D3C4B5A69"
#define BOB "7d1c0e55-2b3a-4c8d-8e9f-0a1b2c3d4e5f"

struct authz_case {
    const sb_api_method_t *m;
    const char *user, *role, *service;
    const char *field; /* the request's user_id; NULL: no request */
    sb_status_t want;
    const char *why; /* expected message, or NULL */
};

static const struct authz_case authz[] = {
    /* public */
    {&pol_public, "", "", "", NULL, SB_OK, NULL},
    {&pol_public, ALICE, "USER", "", NULL, SB_OK, NULL},
    /* signed in */
    {&pol_signed_in, "", "", "", NULL, SB_UNAUTHENTICATED, "sign in first"},
    {&pol_signed_in, NULL, NULL, NULL, NULL, SB_UNAUTHENTICATED, "sign in first"},
    {&pol_signed_in, ALICE, "USER", "", NULL, SB_OK, NULL},
    {&pol_signed_in, ALICE, "PLANNER", "", NULL, SB_OK, NULL},
    {&pol_signed_in, ALICE, "ADMIN", "", NULL, SB_OK, NULL},
    /* roles */
    {&pol_admin, ALICE, "ADMIN", "", NULL, SB_OK, NULL},
    {&pol_admin, ALICE, "USER", "", NULL, SB_PERMISSION_DENIED, "this action needs the ADMIN role"},
    {&pol_admin, "", "ADMIN", "", NULL, SB_UNAUTHENTICATED, "sign in first"}, /* a role without a user */
    {&pol_planner_admin, ALICE, "PLANNER", "", NULL, SB_OK, NULL},
    {&pol_planner_admin, ALICE, "USER", "", NULL, SB_PERMISSION_DENIED,
     "this action needs the PLANNER or ADMIN roles"},
    /* unknown roles: no role clause admits them */
    {&pol_signed_in, ALICE, "GUEST", "", NULL, SB_PERMISSION_DENIED, NULL},
    {&pol_admin, ALICE, "admin", "", NULL, SB_PERMISSION_DENIED, NULL},
    {&pol_admin, ALICE, "ADMIN ", "", NULL, SB_PERMISSION_DENIED, NULL},
    {&pol_admin, ALICE, NULL, "", NULL, SB_PERMISSION_DENIED, NULL},
    /* owner field: self vs other */
    {&pol_self_admin, ALICE, "USER", "", ALICE, SB_OK, NULL},
    {&pol_self_admin, ALICE, "USER", "", ALICE_UPPER, SB_OK, NULL},
    {&pol_self_admin, ALICE, "USER", "", BOB, SB_PERMISSION_DENIED,
     "this action needs the ADMIN role or to be the user in userId"},
    {&pol_self_admin, ALICE, "ADMIN", "", BOB, SB_OK, NULL},
    {&pol_self_admin, ALICE, "ADMIN", "", "not-a-uuid", SB_OK, NULL}, /* the handler says 400 */
    {&pol_self_admin, ALICE, "USER", "", "not-a-uuid", SB_INVALID_ARGUMENT, "userId must be a UUID"},
    {&pol_self_admin, ALICE, "USER", "", "", SB_INVALID_ARGUMENT, "userId must be a UUID"},
    {&pol_self_admin, "", "", "", ALICE, SB_UNAUTHENTICATED, "sign in first"},
    {&pol_self_admin, ALICE, "GUEST", "", ALICE, SB_OK, NULL}, /* signed in and self */
    {&pol_self, ALICE, "ADMIN", "", BOB, SB_PERMISSION_DENIED, "only your own"},
    {&pol_self, BOB, "USER", "", BOB, SB_OK, NULL},
    {&pol_self, BOB, "USER", "", NULL, SB_PERMISSION_DENIED, "only your own"}, /* no request: no owner */
    /* services */
    {&pol_service, "", "", "auth", NULL, SB_OK, NULL},
    {&pol_service, ALICE, "USER", "auth", NULL, SB_OK, NULL},
    {&pol_service, "", "", "member", NULL, SB_PERMISSION_DENIED, "only the auth service may call this"},
    {&pol_service, "", "", "", NULL, SB_PERMISSION_DENIED, "only the auth service may call this"},
    {&pol_service, ALICE, "ADMIN", "", NULL, SB_PERMISSION_DENIED,
     "only the auth service may call this"},
    {&pol_service, "", "", "Auth", NULL, SB_PERMISSION_DENIED, NULL},
    {&pol_planner_or_services, "", "", "reservation", NULL, SB_OK, NULL},
    {&pol_planner_or_services, "", "", "gateway", NULL, SB_UNAUTHENTICATED, NULL},
    {&pol_planner_or_services, ALICE, "PLANNER", "gateway", NULL, SB_OK, NULL},
    /* deny by default */
    {&pol_nothing, ALICE, "ADMIN", "auth", ALICE, SB_PERMISSION_DENIED, "this method admits no caller"},
    {&pol_nothing, "", "", "", NULL, SB_PERMISSION_DENIED, NULL},
    {NULL, ALICE, "ADMIN", "auth", NULL, SB_PERMISSION_DENIED, "this method states no access policy"},
};

Test(api, authorize_cases)
{
    for (size_t i = 0; i < N(authz); i++) {
        const struct authz_case *c = &authz[i];
        Sb__Member__GetMemberRequest req = SB__MEMBER__GET_MEMBER_REQUEST__INIT;
        req.user_id = (char *)c->field;
        sb_buf_t why = SB_BUF_INIT;
        sb_status_t st =
            sb_api_authorize(c->m, c->user, c->role, c->service, c->field ? &req.base : NULL, &why);
        cr_expect_eq(st, c->want, "case %zu: %s, want %s (%s)", i, sb_status_name(st),
                     sb_status_name(c->want), why.buf);
        if (c->want != SB_OK)
            cr_expect(why.len > 0, "case %zu: no message", i);
        if (c->why)
            cr_expect_str_eq(why.buf, c->why, "case %zu", i);
        sb_buf_release(&why);
    }
}

/* The real rows: "self, admin" for GetMember, the message the member tests expect. */
Test(api, authorize_real_rows)
{
    const sb_api_method_t *m = sb_api_find("sb.member.MemberService", "GetMember");
    cr_assert_not_null(m);
    Sb__Member__GetMemberRequest req = SB__MEMBER__GET_MEMBER_REQUEST__INIT;
    req.user_id = ALICE;
    sb_buf_t why = SB_BUF_INIT;
    cr_expect_eq(sb_api_authorize(m, ALICE, "USER", "", &req.base, &why), SB_OK);
    cr_expect_eq(sb_api_authorize(m, BOB, "ADMIN", "", &req.base, &why), SB_OK);
    cr_expect_eq(sb_api_authorize(m, BOB, "PLANNER", "", &req.base, &why), SB_PERMISSION_DENIED);
    cr_expect_str_eq(why.buf, "you may only read your own profile");
    cr_expect_eq(sb_api_authorize(m, "", "", "gateway", &req.base, &why), SB_UNAUTHENTICATED);
    m = sb_api_find("sb.member.MemberService", "UpdateMember");
    cr_assert_not_null(m);
    cr_expect_eq(sb_api_authorize(m, BOB, "ADMIN", "", &req.base, &why), SB_PERMISSION_DENIED,
                 "admins do not edit others' profiles");
    m = sb_api_find("sb.member.MemberService", "CheckCredentials");
    cr_expect_eq(sb_api_authorize(m, "", "", "auth", NULL, &why), SB_OK);
    cr_expect_eq(sb_api_authorize(m, "", "", "gateway", NULL, &why), SB_PERMISSION_DENIED);
    sb_buf_release(&why);
}

/* ------------------------------------------------------------- matching */

struct match_case {
    const char *verb, *path;
    const char *want_path;   /* the binding's template; NULL: no match */
    bool want_known;         /* when no match: the path exists with another verb */
    const char *var, *value; /* one expected variable, or NULL */
    const char *backend;     /* expected backend when matched, or NULL */
};

static const struct match_case matches[] = {
    {"POST", "/signup", "/signup", false, NULL, NULL, "member"},
    {"POST", "/login", "/login", false, NULL, NULL, "auth"},
    {"GET", "/members/42", "/members/{user_id}", false, "user_id", "42", "member"},
    {"PUT", "/members/abc-def", "/members/{user_id}", false, "user_id", "abc-def", NULL},
    {"DELETE", "/members/x", "/members/{user_id}", false, "user_id", "x", NULL},
    {"PATCH", "/members/x", NULL, true, NULL, NULL, NULL},
    {"GET", "/signup", NULL, true, NULL, NULL, NULL},
    {"GET", "/nope", NULL, false, NULL, NULL, NULL},
    {"GET", "/members", NULL, false, NULL, NULL, NULL},
    {"GET", "/members/", NULL, false, NULL, NULL, NULL}, /* empty variable */
    {"GET", "/members/1/extra", NULL, false, NULL, NULL, NULL},
    {"GET", "/members//", NULL, false, NULL, NULL, NULL},
    {"GET", "", NULL, false, NULL, NULL, NULL},
    {"GET", "members/1", NULL, false, NULL, NULL, NULL},
    {"POST", "/events/reservations", "/events/reservations", false, NULL, NULL, "reservation"},
    {"POST", "/events/cancellations", "/events/cancellations", false, NULL, NULL, "reservation"},
    {"POST", "/events/payments", "/events/payments", false, NULL, NULL, "payment"},
    /* one path, the service named by its variable */
    {"POST", "/events/payment", "/events/{service_id}", false, "service_id", "payment", "payment"},
    {"POST", "/events/auth", "/events/{service_id}", false, "service_id", "auth", "auth"},
    {"POST", "/events/reservation", "/events/{service_id}", false, "service_id", "reservation",
     "reservation"},
    {"POST", "/events/nobody", NULL, false, NULL, NULL, NULL},
    {"POST", "/events/member", NULL, false, NULL, NULL, NULL}, /* member consumes no events */
    {"GET", "/events/payment", NULL, true, NULL, NULL, NULL},
    /* every service's: any name matches (the gateway checks the registry) */
    {"GET", "/admin/dead-letters/member", "/admin/dead-letters/{service_id}", false, "service_id",
     "member", "*"},
    {"GET", "/admin/dead-letters/nobody", "/admin/dead-letters/{service_id}", false, "service_id",
     "nobody", "*"},
    {"GET", "/admin/dead-letters/auth/7/replay", NULL, true, NULL, NULL, NULL},
    {"GET", "/performances/p1/reservations", "/performances/{performance_id}/reservations", false,
     "performance_id", "p1", "reservation"},
    {"POST", "/performances/p1/approve", "/performances/{performance_id}/approve", false,
     "performance_id", "p1", "performance"},
    {"GET", "/performances", "/performances", false, NULL, NULL, "performance"},
    {"GET", "/reservations/r9/payment", "/reservations/{reservation_id}/payment", false,
     "reservation_id", "r9", "reservation"},
    {"GET", "/schedules/s1/seats", "/schedules/{schedule_id}/seats", false, "schedule_id", "s1",
     "reservation"},
};

Test(api, match_cases)
{
    for (size_t i = 0; i < N(matches); i++) {
        const struct match_case *c = &matches[i];
        sb_api_match_t m;
        bool ok = sb_api_match(c->verb, c->path, &m);
        if (!c->want_path) {
            cr_expect(!ok, "%s %s should not match (matched %s)", c->verb, c->path,
                      ok ? m.http->path : "");
            cr_expect_eq(m.path_known, c->want_known, "%s %s path_known", c->verb, c->path);
            continue;
        }
        cr_assert(ok, "%s %s should match %s", c->verb, c->path, c->want_path);
        cr_expect_str_eq(m.http->path, c->want_path, "%s %s", c->verb, c->path);
        cr_expect_str_eq(m.http->verb, c->verb);
        if (c->backend && !strcmp(c->backend, "*"))
            cr_expect_str_eq(sb_api_match_backend(&m), c->value, "%s %s", c->verb, c->path);
        else if (c->backend)
            cr_expect_str_eq(m.method->backend, c->backend, "%s %s", c->verb, c->path);
        if (c->backend)
            cr_expect_str_eq(sb_api_match_backend(&m), c->backend[0] == '*' ? c->value : c->backend);
        if (c->var) {
            cr_assert_eq(m.n_vars, 1, "%s %s", c->verb, c->path);
            cr_expect_str_eq(m.vars[0].field, c->var);
            cr_expect_str_eq(m.vars[0].value, c->value);
        } else {
            cr_expect_eq(m.n_vars, 0, "%s %s", c->verb, c->path);
        }
    }
}

Test(api, oversized_variable_is_refused)
{
    char path[400] = "/members/";
    memset(path + 9, 'a', 300);
    path[309] = '\0';
    sb_api_match_t m;
    cr_assert(!sb_api_match("GET", path, &m));
}

Test(api, match_request_carries_the_path_variables)
{
    sb_api_match_t m;
    cr_assert(sb_api_match("GET", "/members/" ALICE, &m));
    sb_arena_t *a = sb_arena_new();
    ProtobufCMessage *req = sb_api_match_request(&m, a);
    cr_assert_eq(req->descriptor, &sb__member__get_member_request__descriptor);
    cr_expect_str_eq(((Sb__Member__GetMemberRequest *)req)->user_id, ALICE);
    sb_buf_t why = SB_BUF_INIT;
    cr_expect_eq(sb_api_authorize(m.method, ALICE, "USER", "", req, &why), SB_OK);
    cr_expect_eq(sb_api_authorize(m.method, BOB, "USER", "", req, &why), SB_PERMISSION_DENIED);
    sb_buf_release(&why);
    sb_arena_free(a);
}
