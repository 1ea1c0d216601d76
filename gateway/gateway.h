/* The HTTP/JSON gateway: route table, request pipeline, OpenAPI. */
#ifndef SB_GATEWAY_H
#define SB_GATEWAY_H
#include <stdbool.h>
#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#include "sb/arena.h"
#include "sb/buf.h"
#include "sb/status.h"

enum {
    GW_PUBLIC = 0,          /* no token needed */
    GW_USER = 1 << 0,
    GW_PLANNER = 1 << 1,
    GW_ADMIN = 1 << 2,
    GW_SIGNED_IN = GW_USER | GW_PLANNER | GW_ADMIN,
};

typedef enum { GW_BACKEND_MEMBER, GW_BACKEND_AUTH, GW_BACKEND_PERFORMANCE, GW_BACKEND_RESERVATION,
               GW_BACKEND_PAYMENT, GW_BACKEND_NOTIFICATION, GW_N_BACKENDS } gw_backend_t;

typedef struct gw_route {
    const char *method;   /* "GET", "POST", "PUT", "DELETE" */
    const char *pattern;  /* "/members/{userId}": {name} segments fill request fields */
    gw_backend_t backend;
    const ProtobufCServiceDescriptor *svc; /* NULL: the service is not built yet -> 501 */
    const char *rpc;      /* method name in svc */
    unsigned roles;       /* GW_PUBLIC or a mask of roles allowed */
    int ok_status;        /* HTTP status on success: 200 or 201 */
    bool body;            /* the JSON body fills the request message */
    bool rate_limited;    /* per-IP rate limit (login) */
    const char *summary;  /* one line for OpenAPI */
    const char *backend_var; /* non-NULL: the path variable naming the backend
                                (POST /events/{serviceId}); svc/backend are then
                                taken from gw_backend_svcs */
} gw_route_t;

extern const gw_route_t gw_routes[];
extern const size_t gw_n_routes;
extern const char *const gw_backend_names[GW_N_BACKENDS];
extern const ProtobufCServiceDescriptor *const gw_backend_svcs[GW_N_BACKENDS];
/* The backend called `name` ("payment"); false when there is none. */
bool gw_backend_by_name(const char *name, gw_backend_t *out);

#define GW_MAX_VARS 4
typedef struct gw_match {
    const gw_route_t *route;
    size_t n_vars;
    struct {
        char name[32];
        char value[128];
    } vars[GW_MAX_VARS];
    bool path_known; /* the path exists with another method (405) */
} gw_match_t;

/* Finds the route for method + path (path without query). false when none;
 * m->path_known tells 405 from 404. */
bool gw_route_match(const char *method, const char *path, gw_match_t *m);

/* The route role bit (GW_USER, GW_PLANNER, GW_ADMIN) of a role name as
 * carried in a token ("USER", ... exactly, see sb_role_parse); 0 for NULL or
 * any other string, so an unknown role matches no route but the public ones. */
unsigned gw_role_bit(const char *role);

/* HTTP status for a status code: sb_status_http (the one table, sb/status.h). */
int gw_http_status(sb_status_t st);

/* Appends the OpenAPI 3 document of every route to out. */
void gw_openapi(sb_buf_t *out);

#endif
