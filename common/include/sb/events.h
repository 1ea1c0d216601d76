/* Domain events over Kafka.
 *
 * Producer side: a service writes an event with sb_outbox_add() inside the
 * same database transaction as the state change (transactional outbox). The
 * relay (sb_relay_start) publishes unsent rows in id order with the
 * aggregate id as the key, through an idempotent producer (acks=all), and
 * marks them published. A crash between publish and mark re-publishes:
 * delivery is at least once.
 *
 * Consumer side: sb_consumer_start() joins a consumer group; each event is
 * handled by sb_inbox_handle(), which records the event id in the inbox table
 * and runs the handler in one transaction, so a redelivered event has no
 * second effect. The offset is committed only after that transaction commits.
 *
 * Topic of an event: "sb." + the part of its type before the first dot
 * ("reservation.created" -> "sb.reservation"). */
#ifndef SB_EVENTS_H
#define SB_EVENTS_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "events.pb-c.h"
#include "sb/buf.h"
#include "sb/pg.h"
#include "sb/status.h"

typedef Sb__Events__EventEnvelope sb_event_envelope_t;

/* The common tables (sb_outbox, sb_inbox, sb_dead_letters); every service's
 * database gets them at start-up. */
sb_status_t sb_events_migrate(sb_pg_pool_t *pool, sb_buf_t *err);

/* The namespace (SB_NAMESPACE, "" by default) keeps one run apart from
 * another on shared servers: a service's database is sb_<name>_<ns>, its
 * consumer group sb-<name>.<ns>, and every topic sb.<prefix>.<ns>. The tests
 * run in namespace "test" so they never touch `make run`'s data or events.
 * sb_namespace_set accepts [a-z0-9_]{0,16}; call it before anything starts. */
const char *sb_namespace(void);
bool sb_namespace_set(const char *name);

/* Writes "sb.<prefix>[.<namespace>]" for type into out (n bytes). false if
 * type has no prefix. */
bool sb_event_topic(const char *type, char *out, size_t n);
/* The same for a topic named in a service definition ("sb.performance"). */
bool sb_topic_name(const char *base, char *out, size_t n);

/* ---- producer ---- */
typedef struct sb_producer sb_producer_t;
/* Idempotent producer (enable.idempotence, acks=all). Caller frees with
 * sb_producer_free, which flushes. NULL with err on bad configuration. */
sb_producer_t *sb_producer_new(const char *brokers, sb_buf_t *err);
void sb_producer_free(sb_producer_t *p);
/* One message of a batch: borrowed for the call. */
typedef struct sb_kafka_msg {
    const char *topic;
    const char *key;
    const void *val;
    size_t len;
    const char *trace_id; /* sent as the x-trace-id header when non-empty */
    int64_t delivered_us; /* out: wall clock (us since the epoch) of its delivery report, 0 if none */
} sb_kafka_msg_t;
/* Produces msgs in order and waits for their delivery reports up to
 * timeout_ms, or until *cancel becomes true (NULL: never). Returns how many
 * of msgs, from the first, were delivered; err says why the next one was
 * not. Nothing of the batch is left in the producer when it returns. */
size_t sb_producer_send_batch(sb_producer_t *p, sb_kafka_msg_t *msgs, size_t n, int timeout_ms,
                              const atomic_bool *cancel, sb_buf_t *err);
/* Produces one message and waits for its delivery report up to timeout_ms:
 * OK, or UNAVAILABLE with err. */
sb_status_t sb_producer_send(sb_producer_t *p, const char *topic, const char *key,
                             const void *val, size_t len, const char *trace_id, int timeout_ms,
                             sb_buf_t *err);
/* Creates the topics if missing (partitions, replication 1). */
sb_status_t sb_kafka_ensure_topics(const char *brokers, const char *const *topics, size_t n,
                                   int partitions, sb_buf_t *err);

/* ---- outbox ---- */
/* Appends an event to the outbox on tx (which must be inside a transaction).
 * The envelope gets a fresh event id, the current time, the thread's trace id
 * and the service name. event_id_out (37 bytes) receives the id if non-NULL. */
sb_status_t sb_outbox_add(sb_pg_conn_t *tx, const char *type, const char *aggregate_id,
                          const ProtobufCMessage *payload, char *event_id_out, sb_buf_t *err);
/* Publishes up to max unsent rows; returns how many were published, or -1
 * with err set. Only one relay per database works at a time (advisory lock). */
int sb_outbox_relay_once(sb_pg_pool_t *pool, sb_producer_t *p, int max, sb_buf_t *err);
/* Marks published events whose type starts with type_prefix ("" = all) and
 * that occurred at or after since (RFC 3339, NULL = all) as unsent, so the
 * relay publishes them again. *count receives how many. */
sb_status_t sb_outbox_replay(sb_pg_pool_t *pool, const char *type_prefix, const char *since,
                             int64_t *count, sb_buf_t *err);

typedef struct sb_relay sb_relay_t;
/* PostgreSQL channel sb_outbox_add notifies (at commit) and the relay listens on. */
#define SB_OUTBOX_CHANNEL "sb_outbox"
/* Background thread running sb_outbox_relay_once when woken by a NOTIFY on
 * SB_OUTBOX_CHANNEL, and at the latest every poll_ms (at once when a batch
 * was full). Borrowed pool and producer must outlive it. */
sb_relay_t *sb_relay_start(sb_pg_pool_t *pool, sb_producer_t *p, int poll_ms);
void sb_relay_stop(sb_relay_t *r); /* publishes what is left once, joins, frees */

/* ---- consumer / inbox ---- */
/* Runs inside the inbox transaction; returning non-OK rolls it back (the
 * event will be retried). ev and its strings are borrowed for the call. */
typedef sb_status_t (*sb_event_fn)(sb_pg_conn_t *tx, const sb_event_envelope_t *ev, void *arg,
                                   sb_buf_t *err);

/* Handles one packed envelope exactly once per event id: *duplicate is set
 * when the id was already processed (the handler is then not called).
 * INVALID_ARGUMENT for an undecodable or incomplete envelope. */
sb_status_t sb_inbox_handle(sb_pg_pool_t *pool, const void *bytes, size_t len, sb_event_fn fn,
                            void *arg, bool *duplicate, sb_buf_t *err);

typedef struct sb_consumer sb_consumer_t;
/* Joins consumer group `group` on the topics and handles events on a
 * background thread. topics are copied. NULL with err on failure. */
sb_consumer_t *sb_consumer_start(const char *brokers, const char *group, const char *const *topics,
                                 size_t n_topics, sb_pg_pool_t *pool, sb_event_fn fn, void *arg,
                                 sb_buf_t *err);
void sb_consumer_stop(sb_consumer_t *c); /* leaves the group, joins, frees */
/* Events this consumer handled, and redelivered ones it dropped, so far. */
void sb_consumer_stats(const sb_consumer_t *c, uint64_t *handled, uint64_t *duplicates);

#endif
