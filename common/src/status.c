/* sb_status_name and sb_status_http, generated from SB_STATUS_TABLE. */
#include "sb/status.h"

#define NAME_(name, code, http) [code] = #name,
static const char *const names[] = {SB_STATUS_TABLE(NAME_)};
#undef NAME_

#define HTTP_(name, code, http) [code] = http,
static const short http_codes[] = {SB_STATUS_TABLE(HTTP_)};
#undef HTTP_

const char *sb_status_name(sb_status_t st)
{
    if ((unsigned)st >= sizeof names / sizeof names[0] || !names[st])
        return "UNKNOWN";
    return names[st];
}

int sb_status_http(sb_status_t st)
{
    if ((unsigned)st >= sizeof http_codes / sizeof http_codes[0] || !http_codes[st])
        return 500;
    return http_codes[st];
}
