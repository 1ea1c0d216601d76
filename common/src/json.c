/* The JSON <-> protobuf transcoder (contract and mapping in sb/json.h): a
 * walk over the protobuf-c field descriptors, jansson for parsing, sb_buf for
 * printing. Every allocation of a decoded message comes from the caller's
 * arena, so a failed decode leaves nothing to free. */
#include "sb/json.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/pb.h"

void sb_json_name(const char *p, char *out, size_t n)
{
    size_t o = 0;
    bool up = false;
    for (; *p && o + 1 < n; p++) {
        if (*p == '_') {
            up = true;
            continue;
        }
        out[o++] = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 32) : *p;
        up = false;
    }
    out[o] = '\0';
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d, const char *key)
{
    char jn[128];
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        sb_json_name(f->name, jn, sizeof jn);
        if (!strcmp(jn, key) || !strcmp(f->name, key))
            return f;
    }
    return NULL;
}

/* ------------------------------------------------------------- decoding */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64val(char c)
{
    if (c == '-')
        return 62; /* URL-safe alphabet accepted too */
    if (c == '_')
        return 63;
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

static bool b64_decode(const char *s, sb_arena_t *a, ProtobufCBinaryData *out)
{
    size_t n = strlen(s);
    uint8_t *o = sb_arena_alloc(a, n * 3 / 4 + 3);
    size_t len = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=')
            break;
        int v = b64val(s[i]);
        if (v < 0)
            return false;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[len++] = (uint8_t)(acc >> bits);
        }
    }
    out->data = o;
    out->len = len;
    return true;
}

static sb_status_t bad(sb_buf_t *err, const char *path, const char *what)
{
    sb_buf_addf(err, "field %s: %s", path, what);
    return SB_INVALID_ARGUMENT;
}

/* Integer from a JSON number or a decimal string. */
static bool json_int(json_t *v, bool is_unsigned, long long *s_out, unsigned long long *u_out)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (is_unsigned && i < 0)
            return false;
        *s_out = i;
        *u_out = (unsigned long long)i;
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d != floor(d) || fabs(d) > 9007199254740992.0 || (is_unsigned && d < 0))
            return false;
        *s_out = (long long)d;
        /* a negative double converted straight to unsigned is undefined (found by fuzz_json) */
        *u_out = (unsigned long long)*s_out;
        return true;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!*s || strlen(s) > 24)
            return false;
        char *end;
        errno = 0;
        if (is_unsigned) {
            if (*s == '-')
                return false;
            *u_out = strtoull(s, &end, 10);
            *s_out = (long long)*u_out;
        } else {
            *s_out = strtoll(s, &end, 10);
            *u_out = (unsigned long long)*s_out;
        }
        return !errno && !*end;
    }
    return false;
}

static sb_status_t parse_value(const ProtobufCFieldDescriptor *f, json_t *v, void *slot, sb_arena_t *a,
                               const char *path, int depth, unsigned flags, sb_buf_t *err);

static sb_status_t fill_message(ProtobufCMessage *m, json_t *obj, sb_arena_t *a, const char *path,
                                int depth, unsigned flags, sb_buf_t *err)
{
    if (depth > SB_JSON_MAX_DEPTH)
        return bad(err, path, "nested too deeply");
    if (!json_is_object(obj))
        return bad(err, path, "must be an object");
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        char sub[256];
        snprintf(sub, sizeof sub, "%s%s%.120s", path, *path ? "." : "", key);
        const ProtobufCFieldDescriptor *f = find_field(d, key);
        if (!f && (flags & SB_JSON_IGNORE_UNKNOWN))
            continue;
        if (!f)
            return bad(err, sub, "unknown field");
        if (json_is_null(v))
            continue; /* null = default */
        char *base = (char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (!json_is_array(v))
                return bad(err, sub, "must be an array");
            size_t n = json_array_size(v);
            if (n > 10000)
                return bad(err, sub, "too many elements");
            size_t sz = sb_pb_value_size(f->type);
            char *arr = sb_arena_alloc(a, n * sz + 1);
            for (size_t i = 0; i < n; i++) {
                char el[280];
                snprintf(el, sizeof el, "%s[%zu]", sub, i);
                sb_status_t st =
                    parse_value(f, json_array_get(v, i), arr + i * sz, a, el, depth, flags, err);
                if (st != SB_OK)
                    return st;
            }
            *(size_t *)(base + f->quantifier_offset) = n;
            *(void **)(base + f->offset) = arr;
            continue;
        }
        sb_status_t st = parse_value(f, v, base + f->offset, a, sub, depth, flags, err);
        if (st != SB_OK)
            return st;
        sb_pb_mark_present(m, f);
    }
    return SB_OK;
}

static sb_status_t parse_value(const ProtobufCFieldDescriptor *f, json_t *v, void *slot, sb_arena_t *a,
                               const char *path, int depth, unsigned flags, sb_buf_t *err)
{
    long long s;
    unsigned long long u;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (!json_int(v, false, &s, &u) || s < INT32_MIN || s > INT32_MAX)
            return bad(err, path, "must be a 32-bit integer");
        *(int32_t *)slot = (int32_t)s;
        return SB_OK;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (!json_int(v, true, &s, &u) || u > UINT32_MAX)
            return bad(err, path, "must be an unsigned 32-bit integer");
        *(uint32_t *)slot = (uint32_t)u;
        return SB_OK;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (!json_int(v, false, &s, &u))
            return bad(err, path, "must be a 64-bit integer (number or decimal string)");
        *(int64_t *)slot = (int64_t)s;
        return SB_OK;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (!json_int(v, true, &s, &u))
            return bad(err, path, "must be an unsigned 64-bit integer");
        *(uint64_t *)slot = (uint64_t)u;
        return SB_OK;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        if (!json_is_number(v))
            return bad(err, path, "must be a number");
        double d = json_number_value(v);
        if (f->type == PROTOBUF_C_TYPE_FLOAT)
            *(float *)slot = (float)d;
        else
            *(double *)slot = d;
        return SB_OK;
    }
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v))
            return bad(err, path, "must be true or false");
        *(protobuf_c_boolean *)slot = json_is_true(v);
        return SB_OK;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        const ProtobufCEnumValue *ev = NULL;
        if (json_is_string(v))
            ev = protobuf_c_enum_descriptor_get_value_by_name(ed, json_string_value(v));
        else if (json_is_integer(v) && json_integer_value(v) >= INT32_MIN &&
                 json_integer_value(v) <= INT32_MAX)
            ev = protobuf_c_enum_descriptor_get_value(ed, (int)json_integer_value(v));
        if (!ev && (flags & SB_JSON_IGNORE_UNKNOWN) && json_is_string(v))
            return SB_OK; /* a value added after our copy of the contract: the default */
        if (!ev) {
            sb_buf_t names = SB_BUF_INIT;
            for (unsigned i = 0; i < ed->n_values; i++)
                if (ed->values[i].value != 0)
                    sb_buf_addf(&names, "%s%s", names.len ? ", " : "", ed->values[i].name);
            sb_buf_addf(err, "field %s: must be one of %s", path, names.buf);
            sb_buf_release(&names);
            return SB_INVALID_ARGUMENT;
        }
        *(int *)slot = ev->value;
        return SB_OK;
    }
    case PROTOBUF_C_TYPE_STRING:
        if (!json_is_string(v))
            return bad(err, path, "must be a string");
        *(char **)slot = sb_arena_strndup(a, json_string_value(v), json_string_length(v));
        if (strlen(*(char **)slot) != json_string_length(v))
            return bad(err, path, "must not contain NUL characters");
        return SB_OK;
    case PROTOBUF_C_TYPE_BYTES:
        if (!json_is_string(v) || !b64_decode(json_string_value(v), a, slot))
            return bad(err, path, "must be a base64 string");
        return SB_OK;
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessageDescriptor *md = f->descriptor;
        ProtobufCMessage *sub = sb_pb_new(a, md);
        *(ProtobufCMessage **)slot = sub;
        return fill_message(sub, v, a, path, depth + 1, flags, err);
    }
    }
    return bad(err, path, "unsupported type");
}

sb_status_t sb_json_decode_object(ProtobufCMessage *m, json_t *obj, sb_arena_t *a, sb_buf_t *err)
{
    return fill_message(m, obj, a, "", 0, 0, err);
}

sb_status_t sb_json_decode(const ProtobufCMessageDescriptor *d, const char *body, size_t len,
                           sb_arena_t *a, ProtobufCMessage **out, sb_buf_t *err)
{
    return sb_json_decode_flags(d, body, len, 0, a, out, err);
}

sb_status_t sb_json_decode_flags(const ProtobufCMessageDescriptor *d, const char *body, size_t len,
                                 unsigned flags, sb_arena_t *a, ProtobufCMessage **out, sb_buf_t *err)
{
    ProtobufCMessage *m = sb_pb_new(a, d);
    *out = m;
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
        i++;
    if (i == len)
        return SB_OK; /* no body: every field default */
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        sb_buf_addf(err, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
        return SB_INVALID_ARGUMENT;
    }
    sb_status_t st = json_is_object(root)
                         ? fill_message(m, root, a, "", 0, flags, err)
                         : (sb_buf_adds(err, "the body must be a JSON object"), SB_INVALID_ARGUMENT);
    json_decref(root);
    return st;
}

sb_status_t sb_json_set_field(ProtobufCMessage *m, const char *name, const char *value, sb_arena_t *a,
                              sb_buf_t *err)
{
    const ProtobufCFieldDescriptor *f = find_field(m->descriptor, name);
    if (!f || f->type == PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED)
        return SB_NOT_FOUND;
    json_t *v;
    switch (f->type) {
    case PROTOBUF_C_TYPE_BOOL:
        if (!strcmp(value, "true"))
            v = json_true();
        else if (!strcmp(value, "false"))
            v = json_false();
        else
            return bad(err, name, "must be true or false");
        break;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        char *end;
        double d = strtod(value, &end);
        if (!*value || *end)
            return bad(err, name, "must be a number");
        v = json_real(d);
        break;
    }
    default:
        v = json_string(value); /* ints accept decimal strings; enums their names */
        if (!v)
            return bad(err, name, "must be valid UTF-8");
    }
    json_t *obj = json_object();
    json_object_set_new(obj, f->name, v);
    sb_status_t st = fill_message(m, obj, a, "", 0, 0, err);
    json_decref(obj);
    return st;
}

/* ------------------------------------------------------------- encoding */

static void put_value(const ProtobufCFieldDescriptor *f, const void *slot, sb_buf_t *out);

static void put_message(const ProtobufCMessage *m, sb_buf_t *out)
{
    if (!m) {
        sb_buf_adds(out, "null");
        return;
    }
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    bool first = true;
    sb_buf_addch(out, '{');
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *slot = base + f->offset;
        if (!sb_pb_has(m, f))
            continue; /* an unset optional, oneof member or sub-message */
        char jn[128];
        sb_json_name(f->name, jn, sizeof jn);
        if (!first)
            sb_buf_addch(out, ',');
        first = false;
        sb_buf_add_json_str(out, jn, strlen(jn));
        sb_buf_addch(out, ':');
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(const char *const *)slot;
            size_t sz = sb_pb_value_size(f->type);
            sb_buf_addch(out, '[');
            for (size_t j = 0; j < n; j++) {
                if (j)
                    sb_buf_addch(out, ',');
                put_value(f, arr + j * sz, out);
            }
            sb_buf_addch(out, ']');
        } else {
            put_value(f, slot, out);
        }
    }
    sb_buf_addch(out, '}');
}

static void put_b64(const ProtobufCBinaryData *b, sb_buf_t *out)
{
    sb_buf_addch(out, '"');
    size_t i = 0;
    for (; i + 2 < b->len; i += 3) {
        unsigned v = (unsigned)b->data[i] << 16 | (unsigned)b->data[i + 1] << 8 | b->data[i + 2];
        char q[4] = {b64[v >> 18], b64[(v >> 12) & 63], b64[(v >> 6) & 63], b64[v & 63]};
        sb_buf_add(out, q, 4);
    }
    if (b->len - i == 1) {
        unsigned v = (unsigned)b->data[i] << 16;
        char q[4] = {b64[v >> 18], b64[(v >> 12) & 63], '=', '='};
        sb_buf_add(out, q, 4);
    } else if (b->len - i == 2) {
        unsigned v = (unsigned)b->data[i] << 16 | (unsigned)b->data[i + 1] << 8;
        char q[4] = {b64[v >> 18], b64[(v >> 12) & 63], b64[(v >> 6) & 63], '='};
        sb_buf_add(out, q, 4);
    }
    sb_buf_addch(out, '"');
}

static void put_value(const ProtobufCFieldDescriptor *f, const void *slot, sb_buf_t *out)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: sb_buf_addf(out, "%" PRId32, *(const int32_t *)slot); break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: sb_buf_addf(out, "%" PRIu32, *(const uint32_t *)slot); break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: sb_buf_addf(out, "\"%" PRId64 "\"", *(const int64_t *)slot); break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: sb_buf_addf(out, "\"%" PRIu64 "\"", *(const uint64_t *)slot); break;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        double d = f->type == PROTOBUF_C_TYPE_FLOAT ? *(const float *)slot : *(const double *)slot;
        if (isnan(d))
            sb_buf_adds(out, "\"NaN\"");
        else if (isinf(d))
            sb_buf_adds(out, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        else
            sb_buf_addf(out, "%.17g", d);
        break;
    }
    case PROTOBUF_C_TYPE_BOOL:
        sb_buf_adds(out, *(const protobuf_c_boolean *)slot ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)slot);
        if (ev)
            sb_buf_add_json_str(out, ev->name, strlen(ev->name));
        else
            sb_buf_addf(out, "%d", *(const int *)slot);
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(const char *const *)slot;
        if (!s)
            s = "";
        sb_buf_add_json_str(out, s, strlen(s));
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: put_b64(slot, out); break;
    case PROTOBUF_C_TYPE_MESSAGE: put_message(*(const ProtobufCMessage *const *)slot, out); break;
    }
}

void sb_json_encode(const ProtobufCMessage *m, sb_buf_t *out)
{
    put_message(m, out);
}
