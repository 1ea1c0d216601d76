#include "sb/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sb/buf.h"
#include "sb/config.h"
#include "sb/util.h"

static char service[32] = "sb";
static sb_log_level_t min_level = SB_LOG_INFO;
static _Thread_local char trace[65];

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void sb_log_init(const char *service_name)
{
    snprintf(service, sizeof service, "%s", service_name);
    const char *lvl = sb_cfg_str("LOG_LEVEL", "info");
    for (int i = 0; i < 4; i++)
        if (strcasecmp(lvl, level_names[i]) == 0)
            min_level = (sb_log_level_t)i;
}

const char *sb_log_service(void)
{
    return service;
}

void sb_log_set_level(sb_log_level_t lvl)
{
    min_level = lvl;
}

void sb_log_set_trace(const char *trace_id)
{
    snprintf(trace, sizeof trace, "%s", trace_id ? trace_id : "");
}

const char *sb_log_trace(void)
{
    return trace;
}

bool sb_log_trace_valid(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
              (t[i] >= '0' && t[i] <= '9') || t[i] == '-' || t[i] == '_'))
            return false;
    return true;
}

void sb_log_fields(sb_log_level_t lvl, const char *fields, const char *fmt, ...)
{
    if (lvl < min_level)
        return;
    char ts[32];
    sb_time_rfc3339(sb_now_ms(), ts);
    sb_buf_t msg = SB_BUF_INIT, line = SB_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    sb_buf_vaddf(&msg, fmt, ap);
    va_end(ap);
    sb_buf_addf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"svc\":", ts, level_names[lvl]);
    sb_buf_add_json_str(&line, service, strlen(service));
    if (trace[0]) {
        sb_buf_adds(&line, ",\"trace\":");
        sb_buf_add_json_str(&line, trace, strlen(trace));
    }
    if (fields && *fields) {
        sb_buf_addch(&line, ',');
        sb_buf_adds(&line, fields);
    }
    sb_buf_adds(&line, ",\"msg\":");
    sb_buf_add_json_str(&line, msg.buf, msg.len);
    sb_buf_adds(&line, "}\n");
    /* one write per line keeps lines whole across threads */
    fwrite(line.buf, 1, line.len, stderr);
    sb_buf_release(&msg);
    sb_buf_release(&line);
}
