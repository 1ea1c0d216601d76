/* Admin HTTP listener (libmicrohttpd): /metrics, /healthz, /readyz; and the
 * /readyz answer (sb/ready.h), which the gateway serves too. */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

#include "sb/alloc.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/ready.h"
#include "sb/service.h"

struct sb_admin {
    struct MHD_Daemon *d;
    sb_ready_fn ready;
    void *arg;
};

struct sb_ready {
    sb_buf_t checks;   /* "name":"state",... */
    sb_buf_t optional; /* "name",... */
    bool ready;
};

void sb_ready_report(sb_ready_t *r, const char *name, bool required, bool ok, const char *why)
{
    sb_buf_t state = SB_BUF_INIT;
    if (ok)
        sb_buf_adds(&state, "ok");
    else
        sb_buf_addf(&state, "down%s%s", why && *why ? ": " : "", why && *why ? why : "");
    if (r->checks.len)
        sb_buf_addch(&r->checks, ',');
    sb_buf_add_json_str(&r->checks, name, strlen(name));
    sb_buf_addch(&r->checks, ':');
    sb_buf_add_json_str(&r->checks, state.buf, state.len);
    sb_buf_release(&state);
    if (!required) {
        if (r->optional.len)
            sb_buf_addch(&r->optional, ',');
        sb_buf_add_json_str(&r->optional, name, strlen(name));
    }
    if (required && !ok)
        r->ready = false;
}

int sb_ready_render(sb_ready_fn ready, void *arg, sb_buf_t *body)
{
    sb_ready_t r = {SB_BUF_INIT, SB_BUF_INIT, true};
    if (ready)
        ready(arg, &r);
    sb_buf_addf(body, "{\"ready\":%s,\"checks\":{%s},\"optional\":[%s]}", r.ready ? "true" : "false",
                r.checks.buf, r.optional.buf);
    sb_buf_release(&r.checks);
    sb_buf_release(&r.optional);
    return r.ready ? 200 : 503;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *type,
                             sb_buf_t *body)
{
    size_t len;
    char *data = sb_buf_detach(body, &len);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls)
{
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)req_cls;
    struct sb_admin *a = cls;
    sb_buf_t body = SB_BUF_INIT;
    if (strcmp(method, "GET") != 0) {
        sb_buf_adds(&body, "{\"error\":{\"code\":\"METHOD_NOT_ALLOWED\",\"message\":\"GET only\"}}");
        return reply(conn, 405, "application/json", &body);
    }
    if (!strcmp(url, "/metrics")) {
        sb_metrics_render(&body);
        return reply(conn, 200, "text/plain; version=0.0.4", &body);
    }
    if (!strcmp(url, "/healthz")) {
        sb_buf_adds(&body, "{\"status\":\"ok\"}");
        return reply(conn, 200, "application/json", &body);
    }
    if (!strcmp(url, "/readyz")) {
        int code = sb_ready_render(a->ready, a->arg, &body);
        return reply(conn, (unsigned)code, "application/json", &body);
    }
    sb_buf_adds(&body, "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"no such path\"}}");
    return reply(conn, 404, "application/json", &body);
}

sb_admin_t *sb_admin_start(int port, sb_ready_fn ready, void *arg, sb_buf_t *err)
{
    struct sb_admin *a = sb_calloc(1, sizeof *a);
    a->ready = ready;
    a->arg = arg;
    a->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, (uint16_t)port, NULL, NULL,
                            on_request, a, MHD_OPTION_CONNECTION_LIMIT, 64,
                            MHD_OPTION_CONNECTION_TIMEOUT, 10, MHD_OPTION_END);
    if (!a->d) {
        sb_buf_addf(err, "cannot listen on admin port %d", port);
        free(a);
        return NULL;
    }
    sb_info("admin HTTP (/metrics /healthz /readyz) on port %d", port);
    return a;
}

void sb_admin_stop(sb_admin_t *a)
{
    if (a)
        MHD_stop_daemon(a->d);
    free(a);
}
