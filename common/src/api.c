/* The API table's readers (sb/api.h): look-up by gRPC path, the access
 * decision, and REST routing. The table itself (sb_api_methods) is generated
 * from the .proto options by tools/gen_api.py into the build tree.
 *
 * The access decision is the one place that says who may call what: the
 * runtime asks it before every handler (rpc_server.c), the gateway before it
 * builds a request, the auth service for POST /auth. Its clauses are tried in
 * the order of sb_api_access_t; nothing admits by default. */
#include <string.h>
#include <strings.h>

#include "sb/api.h"
#include "sb/json.h"
#include "sb/valid.h"

/* ------------------------------------------------------------- look-up */

const sb_api_method_t *sb_api_find(const char *service, const char *method)
{
    if (!service || !method)
        return NULL;
    for (size_t i = 0; i < sb_api_n_methods; i++) {
        const sb_api_method_t *m = &sb_api_methods[i];
        if (!strcmp(m->service->name, service) && !strcmp(m->rpc->name, method))
            return m;
    }
    return NULL;
}

const sb_api_method_t *sb_api_find_path(const char *grpc_path)
{
    /* "/pkg.Service/Method" */
    if (!grpc_path || grpc_path[0] != '/')
        return NULL;
    const char *slash = strrchr(grpc_path, '/');
    size_t n = (size_t)(slash - grpc_path - 1);
    char service[256];
    if (slash == grpc_path || n == 0 || n >= sizeof service)
        return NULL;
    memcpy(service, grpc_path + 1, n);
    service[n] = '\0';
    return sb_api_find(service, slash + 1);
}

/* -------------------------------------------------------------- policy */

unsigned sb_api_role_bit(const char *role)
{
    switch (sb_role_parse(role)) {
    case SB__COMMON__ROLE__USER: return SB_ROLE_BIT_USER;
    case SB__COMMON__ROLE__PLANNER: return SB_ROLE_BIT_PLANNER;
    case SB__COMMON__ROLE__ADMIN: return SB_ROLE_BIT_ADMIN;
    default: return 0;
    }
}

/* "the PLANNER or ADMIN role" */
static void add_roles(sb_buf_t *why, unsigned roles)
{
    static const struct {
        unsigned bit;
        const char *name;
    } all[] = {
        {SB_ROLE_BIT_USER, "USER"}, {SB_ROLE_BIT_PLANNER, "PLANNER"}, {SB_ROLE_BIT_ADMIN, "ADMIN"}};
    size_t n = 0, total = (size_t)__builtin_popcount(roles & SB_ROLE_BITS_ALL);
    sb_buf_adds(why, "the ");
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (!(roles & all[i].bit))
            continue;
        if (n)
            sb_buf_adds(why, n + 1 == total ? " or " : ", ");
        sb_buf_adds(why, all[i].name);
        n++;
    }
    sb_buf_adds(why, total > 1 ? " roles" : " role");
}

static bool admits_service(const sb_api_access_t *a, const char *service)
{
    if (!a->services || !service || !*service)
        return false;
    for (const char *const *s = a->services; *s; s++)
        if (!strcmp(*s, service))
            return true;
    return false;
}

/* The value of the string field `name` of req; NULL when there is none. */
static const char *string_field(const ProtobufCMessage *req, const char *name)
{
    if (!req)
        return NULL;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(req->descriptor, name);
    if (!f || f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    const char *v = *(const char *const *)((const char *)req + f->offset);
    return v ? v : "";
}

static sb_status_t refuse(const sb_api_access_t *a, sb_buf_t *why)
{
    sb_buf_reset(why);
    if (a->refusal) {
        sb_buf_adds(why, a->refusal);
    } else if (a->roles || a->owner_field) {
        sb_buf_adds(why, "this action needs ");
        if (a->roles)
            add_roles(why, a->roles);
        if (a->owner_field) {
            char jn[64];
            sb_json_name(a->owner_field, jn, sizeof jn);
            sb_buf_addf(why, "%sto be the user in %s", a->roles ? " or " : "", jn);
        }
    } else if (a->services) {
        sb_buf_adds(why, "only the ");
        size_t n = 0;
        for (const char *const *s = a->services; *s; s++, n++)
            sb_buf_addf(why, "%s%s", n ? (s[1] ? ", " : " or ") : "", *s);
        sb_buf_addf(why, " service%s may call this", n > 1 ? "s" : "");
    } else {
        sb_buf_adds(why, "this method admits no caller");
    }
    return SB_PERMISSION_DENIED;
}

sb_status_t sb_api_authorize(const sb_api_method_t *m, const char *user_id, const char *role,
                             const char *service, const ProtobufCMessage *req, sb_buf_t *why)
{
    if (!m) {
        sb_buf_reset(why);
        sb_buf_adds(why, "this method states no access policy");
        return SB_PERMISSION_DENIED;
    }
    const sb_api_access_t *a = &m->access;
    if (a->public_ || admits_service(a, service))
        return SB_OK;
    bool signed_in = user_id && *user_id;
    if (!signed_in && (a->roles || a->owner_field)) {
        sb_buf_reset(why);
        sb_buf_adds(why, "sign in first");
        return SB_UNAUTHENTICATED;
    }
    if (!signed_in)
        return refuse(a, why);
    if (a->roles & sb_api_role_bit(role))
        return SB_OK;
    if (a->owner_field) {
        const char *owner = string_field(req, a->owner_field);
        if (owner && !sb_valid_uuid(owner)) {
            char jn[64];
            sb_json_name(a->owner_field, jn, sizeof jn);
            sb_buf_reset(why);
            sb_buf_addf(why, "%s must be a UUID", jn);
            return SB_INVALID_ARGUMENT;
        }
        if (owner && strcasecmp(owner, user_id) == 0)
            return SB_OK;
    }
    return refuse(a, why);
}

/* ------------------------------------------------------------- routing */

/* Next segment of *p (after a '/'), length in *len; advances *p. */
static const char *segment(const char **p, size_t *len)
{
    if (**p != '/')
        return NULL;
    const char *s = ++*p;
    while (**p && **p != '/')
        ++*p;
    *len = (size_t)(*p - s);
    return s;
}

static bool match_one(const char *pattern, const char *path, sb_api_match_t *m)
{
    const char *pp = pattern, *xp = path;
    m->n_vars = 0;
    for (;;) {
        if (!*pp && !*xp)
            return true;
        if (!*pp || !*xp)
            return false;
        size_t pl = 0, xl = 0;
        const char *ps = segment(&pp, &pl), *xs = segment(&xp, &xl);
        if (!ps || !xs)
            return false;
        if (pl > 2 && ps[0] == '{' && ps[pl - 1] == '}') {
            if (xl == 0 || xl >= sizeof m->vars[0].value || m->n_vars == SB_API_MAX_VARS ||
                pl - 2 >= sizeof m->vars[0].field)
                return false;
            memcpy(m->vars[m->n_vars].field, ps + 1, pl - 2);
            m->vars[m->n_vars].field[pl - 2] = '\0';
            memcpy(m->vars[m->n_vars].value, xs, xl);
            m->vars[m->n_vars].value[xl] = '\0';
            m->n_vars++;
        } else if (pl != xl || memcmp(ps, xs, pl) != 0) {
            return false;
        }
    }
}

static const char *dispatch_value(const sb_api_method_t *r, const sb_api_match_t *m)
{
    for (size_t i = 0; r->dispatch_var && i < m->n_vars; i++)
        if (!strcmp(m->vars[i].field, r->dispatch_var))
            return m->vars[i].value;
    return NULL;
}

/* A dispatch_var row serves only the path whose variable names its backend
 * (any service, for a row every service serves). */
static bool dispatches_here(const sb_api_method_t *r, const sb_api_match_t *m)
{
    if (!r->dispatch_var)
        return true;
    const char *v = dispatch_value(r, m);
    return v && (!r->backend || !strcmp(v, r->backend));
}

const char *sb_api_match_backend(const sb_api_match_t *m)
{
    if (!m->method)
        return NULL;
    return m->method->backend ? m->method->backend : dispatch_value(m->method, m);
}

bool sb_api_match(const char *verb, const char *path, sb_api_match_t *m)
{
    m->method = NULL;
    m->http = NULL;
    m->n_vars = 0;
    m->path_known = false;
    /* literal segments win over variables: /events/reservations before
     * /events/{service_id}; then the binding with the fewest variables */
    bool found = false;
    sb_api_match_t tmp;
    for (size_t i = 0; i < sb_api_n_methods; i++) {
        const sb_api_method_t *r = &sb_api_methods[i];
        for (size_t h = 0; h < r->n_http; h++) {
            if (!match_one(r->http[h].path, path, &tmp))
                continue;
            if (strcmp(r->http[h].verb, verb) != 0) {
                m->path_known = true;
                continue;
            }
            if (!dispatches_here(r, &tmp) || (found && tmp.n_vars >= m->n_vars))
                continue;
            bool known = m->path_known;
            *m = tmp;
            m->method = r;
            m->http = &r->http[h];
            m->path_known = known;
            found = true;
            if (tmp.n_vars == 0)
                return true;
        }
    }
    return found;
}

ProtobufCMessage *sb_api_match_request(const sb_api_match_t *m, sb_arena_t *a)
{
    const ProtobufCMessageDescriptor *d = m->method->rpc->input;
    ProtobufCMessage *msg = sb_arena_alloc(a, d->sizeof_message);
    protobuf_c_message_init(d, msg);
    for (size_t i = 0; i < m->n_vars; i++) {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(d, m->vars[i].field);
        if (f && f->type == PROTOBUF_C_TYPE_STRING && f->label != PROTOBUF_C_LABEL_REPEATED)
            *(char **)((char *)msg + f->offset) = sb_arena_strdup(a, m->vars[i].value);
    }
    return msg;
}
