/* The names of events: the namespace a run lives in and the topic of an
 * event type. See sb/events.h.
 *
 * Design: a topic is derived from the type ("reservation.created" ->
 * "sb.reservation"), never stored beside it, so a producer and a consumer
 * cannot disagree on where an event goes. The namespace suffix keeps runs
 * apart on shared servers; it is set once at start-up, before any thread
 * reads it, so it needs no lock. */
#include <stdio.h>
#include <string.h>

#include "sb/events.h"

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
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '_'))
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
