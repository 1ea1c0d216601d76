/* The names of events: the platform's event types and their payloads, the
 * namespace a run lives in and the topic of an event type. See sb/events.h.
 *
 * Design: the pairing of an event type with its payload message is declared
 * once, in the table below, and both sides read it: sb_outbox_add refuses a
 * payload that is not the type's message, and the inbox decodes a payload
 * with the type's message (a type missing here is unknown to the platform:
 * a dead letter). A service's event rows name the payload again, so its
 * handlers read as what they receive; sb_event_table_check compares each row
 * with this table when the service starts, so the two cannot drift apart.
 * Adding an event type = its message in proto/events.proto and one row here.
 *
 * A topic is derived from the type ("reservation.created" ->
 * "sb.reservation"), never stored beside it, so a producer and a consumer
 * cannot disagree on where an event goes. The namespace suffix keeps runs
 * apart on shared servers; it is set once at start-up, before any thread
 * reads it, so it needs no lock. */
#include <stdio.h>
#include <string.h>

#include "sb/events.h"

/* Kept in the order of proto/events.proto. */
static const sb_event_type_t types[] = {
    {"member.withdrawn", &sb__events__member_withdrawn__descriptor},
    {"member.password_changed", &sb__events__member_password_changed__descriptor},
    {"performance.approved", &sb__events__performance_approved__descriptor},
    {"performance.changed", &sb__events__performance_changed__descriptor},
    {"performance.cancelled", &sb__events__performance_cancelled__descriptor},
    {"reservation.created", &sb__events__reservation_created__descriptor},
    {"reservation.confirmed", &sb__events__reservation_confirmed__descriptor},
    {"reservation.changed", &sb__events__reservation_changed__descriptor},
    {"reservation.cancelled", &sb__events__reservation_cancelled__descriptor},
    {"reservation.expired", &sb__events__reservation_expired__descriptor},
    {"reservation.payment_refused", &sb__events__reservation_payment_refused__descriptor},
    {"payment.approved", &sb__events__payment_approved__descriptor},
    {"payment.declined", &sb__events__payment_declined__descriptor},
    {"payment.refunded", &sb__events__payment_refunded__descriptor},
    {"payment.disputed", &sb__events__payment_disputed__descriptor},
    {"notification.sent", &sb__events__notification_sent__descriptor},
    {"audit.admin_action", &sb__events__audit_admin_action__descriptor},
};

const sb_event_type_t *sb_event_types(size_t *n)
{
    *n = sizeof types / sizeof types[0];
    return types;
}

const ProtobufCMessageDescriptor *sb_event_payload_of(const char *type)
{
    for (size_t i = 0; type && i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(types[i].type, type))
            return types[i].payload;
    return NULL;
}

sb_status_t sb_event_table_check(const sb_event_table_t *t, sb_buf_t *err)
{
    for (size_t i = 0; i < t->n; i++) {
        const sb_event_handler_t *row = &t->rows[i];
        const ProtobufCMessageDescriptor *want = sb_event_payload_of(row->type);
        if (!want) {
            sb_buf_addf(err, "event row %zu: \"%s\" is not an event type of the platform", i,
                        row->type ? row->type : "(null)");
            return SB_INVALID_ARGUMENT;
        }
        if (row->payload != want) {
            sb_buf_addf(err, "event row %s: its payload is %s, the platform's is %s", row->type,
                        row->payload ? row->payload->short_name : "(none)", want->short_name);
            return SB_INVALID_ARGUMENT;
        }
        if (!row->fn) {
            sb_buf_addf(err, "event row %s has no handler", row->type);
            return SB_INVALID_ARGUMENT;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(t->rows[j].type, row->type)) {
                sb_buf_addf(err, "event row %s appears twice", row->type);
                return SB_INVALID_ARGUMENT;
            }
    }
    return SB_OK;
}

const sb_event_handler_t *sb_event_table_find(const sb_event_table_t *t, const char *type)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->rows[i].type, type))
            return &t->rows[i];
    return NULL;
}

/* SB_NAMESPACE (see sb_namespace): set once at start-up, read-only after. */
static char ns[17];

const char *sb_namespace(void)
{
    return ns;
}

bool sb_namespace_set(const char *name)
{
    size_t n = strlen(name);
    if (n >= sizeof ns)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
              name[i] == '_'))
            return false;
    memcpy(ns, name, n + 1);
    return true;
}

bool sb_topic_name(const char *base, char *out, size_t n)
{
    int w = snprintf(out, n, "%s%s%s", base, *ns ? "." : "", ns);
    return w > 0 && (size_t)w < n;
}

bool sb_event_topic(const char *type, char *out, size_t n)
{
    const char *dot = strchr(type, '.');
    if (!dot || dot == type)
        return false;
    int w = snprintf(out, n, "sb.%.*s%s%s", (int)(dot - type), type, *ns ? "." : "", ns);
    return w > 0 && (size_t)w < n;
}
