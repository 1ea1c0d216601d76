/* Messages by field name through protobuf-c's descriptors; see sb/pb.h.
 * A field's value sits at m + f->offset; a repeated field's count, a oneof's
 * case and a proto3 `optional` scalar's has_ flag at m + f->quantifier_offset. */
#include "sb/pb.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sb/enum.h"

ProtobufCMessage *sb_pb_new(sb_arena_t *a, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = sb_arena_alloc(a, d->sizeof_message);
    protobuf_c_message_init(d, m);
    return m;
}

size_t sb_pb_value_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM: return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_FLOAT: return 4;
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    }
    return 0;
}

bool sb_pb_has(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const char *base = (const char *)m;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
    bool pointer = f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && !pointer)
        return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
    if ((f->label == PROTOBUF_C_LABEL_OPTIONAL && pointer) ||
        (f->type == PROTOBUF_C_TYPE_MESSAGE && f->label != PROTOBUF_C_LABEL_REPEATED))
        return *(void *const *)(base + f->offset) != NULL;
    return true;
}

void sb_pb_mark_present(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    char *base = (char *)m;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *)(base + f->quantifier_offset) = f->id;
    else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
             f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
        *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
}

/* ------------------------------------------------------------ from text */

static bool parse_signed(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_unsigned(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno || v > max || strchr(s, '-'))
        return false;
    *out = v;
    return true;
}

static bool parse_bool(const char *s, protobuf_c_boolean *out)
{
    if (!strcmp(s, "t") || !strcmp(s, "true") || !strcmp(s, "1"))
        *out = 1;
    else if (!strcmp(s, "f") || !strcmp(s, "false") || !strcmp(s, "0"))
        *out = 0;
    else
        return false;
    return true;
}

/* text as a value of f's type into slot; false when it does not parse. */
static bool parse_text(const ProtobufCFieldDescriptor *f, const char *text, void *slot)
{
    bool wide = sb_pb_value_size(f->type) == 8; /* 64-bit integers */
    long long s;
    unsigned long long u;
    char *end;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (!parse_signed(text, wide ? INT64_MIN : INT32_MIN, wide ? INT64_MAX : INT32_MAX, &s))
            return false;
        if (wide)
            *(int64_t *)slot = (int64_t)s;
        else
            *(int32_t *)slot = (int32_t)s;
        return true;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (!parse_unsigned(text, wide ? UINT64_MAX : UINT32_MAX, &u))
            return false;
        if (wide)
            *(uint64_t *)slot = (uint64_t)u;
        else
            *(uint32_t *)slot = (uint32_t)u;
        return true;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        double d = strtod(text, &end);
        if (end == text || *end)
            return false;
        if (f->type == PROTOBUF_C_TYPE_FLOAT)
            *(float *)slot = (float)d;
        else
            *(double *)slot = d;
        return true;
    }
    case PROTOBUF_C_TYPE_BOOL: return parse_bool(text, slot);
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, text);
        if (!v)
            return false;
        *(int *)slot = v->value;
        return true;
    }
    case PROTOBUF_C_TYPE_STRING: *(char **)slot = (char *)text; return true;
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE: return false;
    }
    return false;
}

bool sb_pb_set_text(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const char *text)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED || !parse_text(f, text, (char *)m + f->offset))
        return false;
    sb_pb_mark_present(m, f);
    return true;
}

bool sb_pb_set_repeated(ProtobufCMessage *m, const char *name, void *items, size_t n)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    if (!f || f->label != PROTOBUF_C_LABEL_REPEATED)
        return false;
    *(size_t *)((char *)m + f->quantifier_offset) = n;
    *(void **)((char *)m + f->offset) = items;
    return true;
}

/* ---------------------------------------------------------- field copies */

/* A value of another type: an enum of another enum type, a sub-message of
 * another message type. */
static bool converted(const ProtobufCFieldDescriptor *d, const ProtobufCFieldDescriptor *s)
{
    return (d->type == PROTOBUF_C_TYPE_ENUM || d->type == PROTOBUF_C_TYPE_MESSAGE) &&
           d->descriptor != s->descriptor;
}

/* One value of field s (at from) into the slot of field d (at to). */
static void copy_value(sb_arena_t *a, const ProtobufCFieldDescriptor *d,
                       const ProtobufCFieldDescriptor *s, void *to, const void *from)
{
    if (!converted(d, s)) {
        memcpy(to, from, sb_pb_value_size(d->type));
    } else if (d->type == PROTOBUF_C_TYPE_ENUM) {
        int v = sb_enum_value(d->descriptor, sb_enum_name(s->descriptor, *(const int *)from), INT32_MIN);
        if (v != INT32_MIN)
            *(int *)to = v; /* a name the other enum lacks keeps the default */
    } else {
        const ProtobufCMessage *sm = *(ProtobufCMessage *const *)from;
        ProtobufCMessage *dm = sm ? sb_pb_new(a, d->descriptor) : NULL;
        if (sm)
            sb_pb_copy_fields(a, dm, sm);
        *(ProtobufCMessage **)to = dm;
    }
}

void sb_pb_copy_fields(sb_arena_t *a, ProtobufCMessage *dst, const ProtobufCMessage *src)
{
    const ProtobufCMessageDescriptor *dd = dst->descriptor;
    char *dbase = (char *)dst;
    const char *sbase = (const char *)src;
    for (unsigned i = 0; i < dd->n_fields; i++) {
        const ProtobufCFieldDescriptor *d = &dd->fields[i];
        const ProtobufCFieldDescriptor *s =
            protobuf_c_message_descriptor_get_field_by_name(src->descriptor, d->name);
        bool repeated = d->label == PROTOBUF_C_LABEL_REPEATED;
        if (!s || s->type != d->type || (s->label == PROTOBUF_C_LABEL_REPEATED) != repeated)
            continue;
        if (!repeated) {
            if (sb_pb_has(src, s)) {
                copy_value(a, d, s, dbase + d->offset, sbase + s->offset);
                sb_pb_mark_present(dst, d);
            }
            continue;
        }
        size_t n = *(const size_t *)(sbase + s->quantifier_offset);
        void *items = *(void *const *)(sbase + s->offset);
        if (converted(d, s)) { /* a new array; otherwise the source's is shared */
            size_t size = sb_pb_value_size(d->type);
            char *to = sb_arena_alloc_array(a, n, size);
            for (size_t k = 0; k < n; k++)
                copy_value(a, d, s, to + k * size, (const char *)items + k * size);
            items = to;
        }
        *(size_t *)(dbase + d->quantifier_offset) = n;
        *(void **)(dbase + d->offset) = items;
    }
}
