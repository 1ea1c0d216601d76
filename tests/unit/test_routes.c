/* The gateway's route table and matcher (gateway/routes*.c): literal paths,
 * path variables, 404 vs 405, literal-over-variable precedence, limits, and
 * the one status -> HTTP table. Cases are data: one row per request. */
#include <criterion/criterion.h>
#include <string.h>

#include "gateway.h"
#include "sb/json.h"

struct route_case {
    const char *method, *path;
    const char *want_pattern; /* NULL: no route */
    bool want_known;          /* when no route: the path exists with another method */
    const char *var, *value;  /* one expected variable, or NULL */
};

static const struct route_case cases[] = {
    {"POST", "/signup", "/signup", false, NULL, NULL},
    {"POST", "/login", "/login", false, NULL, NULL},
    {"GET", "/members/42", "/members/{userId}", false, "userId", "42"},
    {"PUT", "/members/abc-def", "/members/{userId}", false, "userId", "abc-def"},
    {"DELETE", "/members/x", "/members/{userId}", false, "userId", "x"},
    {"PATCH", "/members/x", NULL, true, NULL, NULL},
    {"GET", "/signup", NULL, true, NULL, NULL},
    {"GET", "/nope", NULL, false, NULL, NULL},
    {"GET", "/members", NULL, false, NULL, NULL},
    {"GET", "/members/", NULL, false, NULL, NULL},           /* empty variable */
    {"GET", "/members/1/extra", NULL, false, NULL, NULL},
    {"GET", "/members//", NULL, false, NULL, NULL},
    {"GET", "", NULL, false, NULL, NULL},
    {"GET", "members/1", NULL, false, NULL, NULL},
    {"POST", "/events/reservations", "/events/reservations", false, NULL, NULL},
    {"POST", "/events/cancellations", "/events/cancellations", false, NULL, NULL},
    {"POST", "/events/payment", "/events/{serviceId}", false, "serviceId", "payment"},
    {"GET", "/performances/p1/reservations", "/performances/{performanceId}/reservations", false,
     "performanceId", "p1"},
    {"POST", "/performances/p1/approve", "/performances/{performanceId}/approve", false, "performanceId", "p1"},
    {"GET", "/performances", "/performances", false, NULL, NULL},
    {"GET", "/reservations/r9/payment", "/reservations/{reservationId}/payment", false, "reservationId", "r9"},
    {"GET", "/schedules/s1/seats", "/schedules/{scheduleId}/seats", false, "scheduleId", "s1"},
};

Test(routes, table_driven_cases)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct route_case *c = &cases[i];
        gw_match_t m;
        bool ok = gw_route_match(c->method, c->path, &m);
        if (!c->want_pattern) {
            cr_expect(!ok, "%s %s should not match (matched %s)", c->method, c->path,
                      ok ? m.route->pattern : "");
            cr_expect_eq(m.path_known, c->want_known, "%s %s path_known", c->method, c->path);
            continue;
        }
        cr_assert(ok, "%s %s should match %s", c->method, c->path, c->want_pattern);
        cr_expect_str_eq(m.route->pattern, c->want_pattern, "%s %s", c->method, c->path);
        cr_expect_str_eq(m.route->method, c->method);
        if (c->var) {
            cr_assert_eq(m.n_vars, 1, "%s %s", c->method, c->path);
            cr_expect_str_eq(m.vars[0].name, c->var);
            cr_expect_str_eq(m.vars[0].value, c->value);
        } else {
            cr_expect_eq(m.n_vars, 0, "%s %s", c->method, c->path);
        }
    }
}

Test(routes, oversized_variable_is_refused)
{
    char path[400] = "/members/";
    memset(path + 9, 'a', 300);
    path[309] = '\0';
    gw_match_t m;
    cr_assert(!gw_route_match("GET", path, &m));
}

Test(routes, every_route_names_an_existing_rpc_and_fields)
{
    for (size_t i = 0; i < gw_n_routes; i++) {
        const gw_route_t *r = &gw_routes[i];
        cr_assert(r->svc, "%s %s has no service", r->method, r->pattern);
        const ProtobufCMethodDescriptor *md = protobuf_c_service_descriptor_get_method_by_name(r->svc, r->rpc);
        cr_assert(md, "%s %s: %s has no method %s", r->method, r->pattern, r->svc->name, r->rpc);
        cr_assert(r->ok_status == 200 || r->ok_status == 201);
        /* every {var} in the pattern is a field of the request (by JSON name) */
        const char *p = r->pattern;
        while ((p = strchr(p, '{'))) {
            const char *e = strchr(p, '}');
            cr_assert(e);
            char json[64] = {0};
            memcpy(json, p + 1, (size_t)(e - p - 1));
            bool found = false;
            for (unsigned f = 0; f < md->input->n_fields; f++) {
                char n[64];
                sb_json_name(md->input->fields[f].name, n, sizeof n);
                found = found || !strcmp(n, json);
            }
            cr_expect(found, "%s %s: {%s} is not a field of %s", r->method, r->pattern, json, md->input->name);
            p = e;
        }
    }
}

Test(routes, status_table)
{
    cr_expect_eq(gw_http_status(SB_OK), 200);
    cr_expect_eq(gw_http_status(SB_INVALID_ARGUMENT), 400);
    cr_expect_eq(gw_http_status(SB_UNAUTHENTICATED), 401);
    cr_expect_eq(gw_http_status(SB_PERMISSION_DENIED), 403);
    cr_expect_eq(gw_http_status(SB_NOT_FOUND), 404);
    cr_expect_eq(gw_http_status(SB_ALREADY_EXISTS), 409);
    cr_expect_eq(gw_http_status(SB_ABORTED), 409);
    cr_expect_eq(gw_http_status(SB_RESOURCE_EXHAUSTED), 429);
    cr_expect_eq(gw_http_status(SB_INTERNAL), 500);
    cr_expect_eq(gw_http_status(SB_UNIMPLEMENTED), 501);
    cr_expect_eq(gw_http_status(SB_UNAVAILABLE), 503);
    cr_expect_eq(gw_http_status(SB_DEADLINE_EXCEEDED), 504);
    cr_expect_eq(gw_http_status((sb_status_t)99), 500);
}
