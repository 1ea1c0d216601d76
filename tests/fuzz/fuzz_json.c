/* JSON -> protobuf for every request message the gateway accepts: the first
 * byte picks the REST method of the API table, the rest is the body. A message that parses must
 * print as JSON and parse again to the same wire bytes. */
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
    if (size < 1)
        return 0;
    const sb_api_method_t *rest[256];
    size_t n = 0;
    for (size_t i = 0; i < sb_api_n_methods && n < sizeof rest / sizeof rest[0]; i++)
        if (sb_api_methods[i].n_http)
            rest[n++] = &sb_api_methods[i];
    if (n == 0)
        return 0;
    const ProtobufCMethodDescriptor *md = rest[data[0] % n]->rpc;
    sb_arena_t *a = sb_arena_new();
    sb_buf_t err = SB_BUF_INIT, out = SB_BUF_INIT, err2 = SB_BUF_INIT;
    ProtobufCMessage *m = NULL, *m2 = NULL;
    if (sb_json_decode(md->input, (const char *)data + 1, size - 1, a, &m, &err) == SB_OK) {
        sb_json_encode(m, &out);
        if (sb_json_decode(md->input, out.buf, out.len, a, &m2, &err2) != SB_OK)
            __builtin_trap(); /* our own output must parse */
        size_t n1 = protobuf_c_message_get_packed_size(m), n2 = protobuf_c_message_get_packed_size(m2);
        uint8_t *b1 = sb_arena_alloc(a, n1 + 1), *b2 = sb_arena_alloc(a, n2 + 1);
        protobuf_c_message_pack(m, b1);
        protobuf_c_message_pack(m2, b2);
        if (n1 != n2 || memcmp(b1, b2, n1) != 0)
            __builtin_trap(); /* the round trip changed the message */
    }
    sb_buf_release(&out);
    sb_buf_release(&err);
    sb_buf_release(&err2);
    sb_arena_free(a);
    return 0;
}
