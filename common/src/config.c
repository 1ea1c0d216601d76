#include "sb/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sb/log.h"

const char *sb_cfg_str(const char *name, const char *def)
{
    const char *v = getenv(name);
    return (v && *v) ? v : def;
}

const char *sb_cfg_need(const char *name, sb_buf_t *err)
{
    const char *v = sb_cfg_str(name, NULL);
    if (!v)
        sb_buf_addf(err, "%s is not set", name);
    return v;
}

long sb_cfg_int(const char *name, long def, long min, long max)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || n < min || n > max) {
        sb_warn("config %s=%s is not an integer in [%ld,%ld]; using %ld", name, v, min, max, def);
        return def;
    }
    return n;
}

bool sb_cfg_bool(const char *name, bool def)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    if (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
        return true;
    if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off"))
        return false;
    sb_warn("config %s=%s is not a boolean; using %s", name, v, def ? "true" : "false");
    return def;
}
