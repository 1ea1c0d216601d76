/* Route matching: pure functions, unit tested. */
#include <string.h>

#include "gateway.h"
#include "sb/valid.h"

const char *const gw_backend_names[GW_N_BACKENDS] = {"member", "auth", "performance",
                                                     "reservation", "payment", "notification"};

bool gw_backend_by_name(const char *name, gw_backend_t *out)
{
    for (int b = 0; b < GW_N_BACKENDS; b++)
        if (!strcmp(gw_backend_names[b], name)) {
            *out = (gw_backend_t)b;
            return true;
        }
    return false;
}

unsigned gw_role_bit(const char *role)
{
    switch (sb_role_parse(role)) {
    case SB__MEMBER__ROLE__USER: return GW_USER;
    case SB__MEMBER__ROLE__PLANNER: return GW_PLANNER;
    case SB__MEMBER__ROLE__ADMIN: return GW_ADMIN;
    default: return 0;
    }
}

int gw_http_status(sb_status_t st)
{
    return sb_status_http(st); /* the one table: SB_STATUS_TABLE in sb/status.h */
}

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

static bool match_one(const gw_route_t *r, const char *path, gw_match_t *m)
{
    const char *pp = r->pattern, *xp = path;
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
            if (xl == 0 || xl >= sizeof m->vars[0].value || m->n_vars == GW_MAX_VARS ||
                pl - 2 >= sizeof m->vars[0].name)
                return false;
            memcpy(m->vars[m->n_vars].name, ps + 1, pl - 2);
            m->vars[m->n_vars].name[pl - 2] = '\0';
            memcpy(m->vars[m->n_vars].value, xs, xl);
            m->vars[m->n_vars].value[xl] = '\0';
            m->n_vars++;
        } else if (pl != xl || memcmp(ps, xs, pl) != 0) {
            return false;
        }
    }
}

bool gw_route_match(const char *method, const char *path, gw_match_t *m)
{
    m->route = NULL;
    m->path_known = false;
    /* literal segments win over variables: /events/reservations before /events/{serviceId} */
    const gw_route_t *var_hit = NULL;
    gw_match_t var_m;
    for (size_t i = 0; i < gw_n_routes; i++) {
        const gw_route_t *r = &gw_routes[i];
        gw_match_t tmp;
        if (!match_one(r, path, &tmp))
            continue;
        if (strcmp(r->method, method) != 0) {
            m->path_known = true;
            continue;
        }
        if (tmp.n_vars == 0) {
            *m = tmp;
            m->route = r;
            return true;
        }
        if (!var_hit || tmp.n_vars < var_m.n_vars) {
            var_hit = r;
            var_m = tmp;
        }
    }
    if (var_hit) {
        bool known = m->path_known;
        *m = var_m;
        m->route = var_hit;
        m->path_known = known;
        return true;
    }
    return false;
}
