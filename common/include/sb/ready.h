/* Readiness: what GET /readyz answers, a service's (admin.c) or the
 * gateway's. A readiness callback reports each dependency it needs or uses;
 * the answer names them all with their state, so an operator reads which
 * one is down:
 *
 *   503 {"ready":false,"checks":{"postgres":"down: ...","redis":"ok","kafka":"ok"},
 *        "optional":["kafka"]}
 *
 * A required dependency that is down makes the process unready (503); an
 * optional one is reported and changes nothing (a service's Kafka: the outbox
 * keeps its events and the relay publishes them once the broker is back). */
#ifndef SB_READY_H
#define SB_READY_H
#include <stdbool.h>

#include "sb/buf.h"

typedef struct sb_ready sb_ready_t;

/* Reports dependency `name` ("postgres"): ok, or down because of why (a
 * short reason for operators, NULL for none). */
void sb_ready_report(sb_ready_t *r, const char *name, bool required, bool ok, const char *why);

/* A readiness callback: reports every dependency with sb_ready_report. */
typedef void (*sb_ready_fn)(void *arg, sb_ready_t *r);

/* Runs ready (NULL: nothing to check, ready) and appends the JSON answer to
 * body; returns the HTTP status, 200 or 503. */
int sb_ready_render(sb_ready_fn ready, void *arg, sb_buf_t *body);

#endif
