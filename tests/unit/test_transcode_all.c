/* Every message type in proto/ survives protobuf -> JSON -> protobuf unchanged.
 * Each message is filled with non-default values in every field (strings,
 * 64-bit numbers beyond 2^53, negative numbers, enums by their last value,
 * bytes, repeated fields with two elements, nested messages) and the wire
 * encodings before and after the JSON trip are compared. The list of message
 * types is walked from the service descriptors and the event payloads, so a
 * new message is covered without touching this file. */
#include <criterion/criterion.h>
#include <string.h>

#include "auth.pb-c.h"
#include "events.pb-c.h"
#include "health.pb-c.h"
#include "member.pb-c.h"
#include "notification.pb-c.h"
#include "payment.pb-c.h"
#include "performance.pb-c.h"
#include "reservation.pb-c.h"
#include "sb/json.h"

#define MAX_MSGS 256
static const ProtobufCMessageDescriptor *msgs[MAX_MSGS];
static size_t n_msgs;

static void want(const ProtobufCMessageDescriptor *d)
{
    for (size_t i = 0; i < n_msgs; i++)
        if (msgs[i] == d)
            return;
    cr_assert_lt(n_msgs, MAX_MSGS);
    msgs[n_msgs++] = d;
    for (unsigned i = 0; i < d->n_fields; i++)
        if (d->fields[i].type == PROTOBUF_C_TYPE_MESSAGE)
            want(d->fields[i].descriptor);
}

static void collect(void)
{
    const ProtobufCServiceDescriptor *svcs[] = {
        &sb__member__member_service__descriptor,
        &sb__auth__auth_service__descriptor,
        &sb__performance__performance_service__descriptor,
        &sb__reservation__reservation_service__descriptor,
        &sb__payment__payment_service__descriptor,
        &sb__notification__notification_service__descriptor,
        &grpc__health__v1__health__descriptor,
    };
    for (size_t s = 0; s < sizeof svcs / sizeof svcs[0]; s++)
        for (unsigned m = 0; m < svcs[s]->n_methods; m++) {
            want(svcs[s]->methods[m].input);
            want(svcs[s]->methods[m].output);
        }
    const ProtobufCMessageDescriptor *events[] = {
        &sb__events__event_envelope__descriptor,          &sb__events__member_withdrawn__descriptor,
        &sb__events__member_password_changed__descriptor, &sb__events__performance_approved__descriptor,
        &sb__events__performance_changed__descriptor,     &sb__events__performance_cancelled__descriptor,
        &sb__events__reservation_created__descriptor,     &sb__events__reservation_confirmed__descriptor,
        &sb__events__reservation_changed__descriptor,     &sb__events__reservation_cancelled__descriptor,
        &sb__events__reservation_expired__descriptor,     &sb__events__payment_approved__descriptor,
        &sb__events__payment_declined__descriptor,        &sb__events__payment_refunded__descriptor,
        &sb__events__notification_sent__descriptor,
    };
    for (size_t e = 0; e < sizeof events / sizeof events[0]; e++)
        want(events[e]);
}

static void fill(ProtobufCMessage *m, sb_arena_t *a, int depth);

/* Writes one non-default value of field f at p (element i of a repeated field). */
static void fill_value(const ProtobufCFieldDescriptor *f, void *p, size_t i, sb_arena_t *a, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: *(int32_t *)p = -123456 - (int32_t)i; break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: *(uint32_t *)p = 4000000000u + (uint32_t)i; break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: *(int64_t *)p = -9007199254740993LL - (int64_t)i; break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: *(uint64_t *)p = UINT64_MAX - i; break;
    case PROTOBUF_C_TYPE_FLOAT: *(float *)p = 0.5f + (float)i; break;
    case PROTOBUF_C_TYPE_DOUBLE: *(double *)p = -1234.25 + (double)i; break;
    case PROTOBUF_C_TYPE_BOOL: *(protobuf_c_boolean *)p = 1; break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *e = f->descriptor;
        *(int *)p = e->values[e->n_values - 1].value;
        break;
    }
    case PROTOBUF_C_TYPE_STRING: *(char **)p = sb_arena_printf(a, "%s \"é\" \\ %zu", f->name, i); break;
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = p;
        b->len = 5;
        b->data = sb_arena_alloc(a, 5);
        memcpy(b->data, "\x00\xff\x10\x80\x7f", 5);
        b->data[0] = (uint8_t)i;
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessageDescriptor *d = f->descriptor;
        ProtobufCMessage *sub = sb_arena_alloc(a, d->sizeof_message);
        protobuf_c_message_init(d, sub);
        if (depth < 3)
            fill(sub, a, depth + 1);
        *(ProtobufCMessage **)p = sub;
        break;
    }
    }
}

static size_t value_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return 8;
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM: return sizeof(int);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    default: return 4;
    }
}

static void fill(ProtobufCMessage *m, sb_arena_t *a, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        char *base = (char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = 2, sz = value_size(f);
            char *arr = sb_arena_alloc(a, n * sz);
            for (size_t k = 0; k < n; k++)
                fill_value(f, arr + k * sz, k, a, depth);
            *(size_t *)(base + f->quantifier_offset) = n;
            *(void **)(base + f->offset) = arr;
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            /* set only the first member of each oneof */
            uint32_t *qcase = (uint32_t *)(base + f->quantifier_offset);
            if (*qcase)
                continue;
            *qcase = f->id;
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
                   f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE) {
            *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
        }
        fill_value(f, base + f->offset, 0, a, depth);
    }
}

Test(transcode_all, every_message_round_trips)
{
    collect();
    cr_assert_gt(n_msgs, 50, "only %zu message types found", n_msgs);
    for (size_t i = 0; i < n_msgs; i++) {
        sb_arena_t *a = sb_arena_new();
        sb_buf_t json = SB_BUF_INIT, err = SB_BUF_INIT;
        ProtobufCMessage *m = sb_arena_alloc(a, msgs[i]->sizeof_message);
        protobuf_c_message_init(msgs[i], m);
        fill(m, a, 0);
        sb_json_encode(m, &json);
        ProtobufCMessage *back = NULL;
        sb_status_t st = sb_json_decode(msgs[i], json.buf, json.len, a, &back, &err);
        cr_assert_eq(st, SB_OK, "%s: %s\njson: %s", msgs[i]->name, err.buf, json.buf);
        size_t n1 = protobuf_c_message_get_packed_size(m), n2 = protobuf_c_message_get_packed_size(back);
        cr_assert_eq(n1, n2, "%s: packed %zu vs %zu bytes\njson: %s", msgs[i]->name, n1, n2, json.buf);
        uint8_t *b1 = sb_arena_alloc(a, n1 + 1), *b2 = sb_arena_alloc(a, n2 + 1);
        protobuf_c_message_pack(m, b1);
        protobuf_c_message_pack(back, b2);
        cr_assert_eq(memcmp(b1, b2, n1), 0, "%s differs after the JSON round trip\njson: %s",
                     msgs[i]->name, json.buf);
        sb_buf_release(&json);
        sb_buf_release(&err);
        sb_arena_free(a);
    }
}
