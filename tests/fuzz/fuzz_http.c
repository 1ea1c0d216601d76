#define _GNU_SOURCE /* memmem */
/* The gateway's request path without the socket: "METHOD /path?query" on the
 * first line, the JSON body after the first blank line. Routes it, fills the
 * request message from path variables, query parameters and the body exactly
 * as gateway/server.c does, and prints the message back as JSON. */
#include <string.h>

#include "fuzz.h"
#include "sb/api.h"
#include "sb/log.h"
#include "sb/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet++)
        sb_log_set_level(SB_LOG_ERROR);
    char line[2048];
    const uint8_t *nl = memchr(data, '\n', size);
    size_t ll = nl ? (size_t)(nl - data) : size;
    if (ll >= sizeof line)
        return 0;
    memcpy(line, data, ll);
    line[ll] = '\0';
    const char *body = "";
    size_t blen = 0;
    if (nl) {
        const uint8_t *b = nl + 1;
        size_t rest = size - ll - 1;
        const uint8_t *blank = memmem(b, rest, "\n\n", 2);
        if (blank) {
            body = (const char *)blank + 2;
            blen = rest - (size_t)(blank + 2 - b);
        }
    }
    char *sp = strchr(line, ' ');
    if (!sp)
        return 0;
    *sp = '\0';
    char *path = sp + 1, *query = strchr(path, '?');
    if (query)
        *query++ = '\0';

    sb_api_match_t m;
    if (!sb_api_match(line, path, &m))
        return 0;
    const ProtobufCMethodDescriptor *md =
        protobuf_c_service_descriptor_get_method_by_name(m.method->service, m.method->rpc->name);
    if (!md || md->input != m.method->rpc->input)
        __builtin_trap(); /* the API table names a method the service lacks */
    sb_arena_t *a = sb_arena_new();
    sb_buf_t err = SB_BUF_INIT, out = SB_BUF_INIT;
    ProtobufCMessage *msg = NULL;
    if (sb_json_decode(md->input, body, blen, a, &msg, &err) != SB_OK)
        goto out;
    for (size_t i = 0; i < m.n_vars; i++)
        if (sb_json_set_field(msg, m.vars[i].field, m.vars[i].value, a, &err) != SB_OK)
            goto out;
    while (query && *query) {
        char *amp = strchr(query, '&');
        if (amp)
            *amp++ = '\0';
        char *eq = strchr(query, '=');
        if (eq)
            *eq++ = '\0';
        if (sb_json_set_field(msg, query, eq ? eq : "", a, &err) != SB_OK)
            goto out;
        query = amp;
    }
    sb_json_encode(msg, &out);
out:
    sb_buf_release(&out);
    sb_buf_release(&err);
    sb_arena_free(a);
    return 0;
}
