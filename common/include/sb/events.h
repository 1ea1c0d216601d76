/* Domain events over Kafka.
 *
 * Producer side: a service writes an event with sb_outbox_add() inside the
 * same database transaction as the state change (transactional outbox). The
 * relay publishes unsent rows in id order with the aggregate id as the key,
 * through an idempotent producer (acks=all), and marks the delivered ones
 * published. A crash between publish and mark re-publishes: delivery is at
 * least once.
 *
 * Consumer side: a service declares an event table, one row per event type
 * it handles: {"performance.approved", &sb__events__performance_approved__descriptor,
 * on_approved}. The consumer (sb_consumer_start) joins a consumer group on the
 * topics of those types; each message goes through sb_inbox_handle(), which
 * decodes the envelope and the payload into an arena, records the event id in
 * the inbox and runs the row's handler in one transaction, so a redelivered
 * event has no second effect. The offset is committed only after that
 * transaction commits. DeliverEvent (sb/service.h) takes the same path.
 *
 * Which event goes where (one policy for Kafka and DeliverEvent):
 *   a type the service has a row for        handled; recorded in the inbox
 *   a platform type without a row           skipped; recorded in the inbox
 *                                           (other events of a topic it reads)
 *   an undecodable envelope, an envelope    dead letter (sb_dead_letters, with
 *   without a UUID event id or a type, a    the reason); NOT recorded in the
 *   type unknown to the platform, an        inbox, so a corrected resend under
 *   undecodable payload, a handler's        the same id is handled; the Kafka
 *   refusal (sb_event_refuse)               offset moves on; DeliverEvent
 *                                           answers INVALID_ARGUMENT
 *   any other handler or database failure   rolled back and retried (Kafka:
 *                                           5 attempts with backoff, then a
 *                                           dead letter; DeliverEvent: the
 *                                           status, for the caller to retry)
 *
 * Topic of an event: "sb." + the part of its type before the first dot
 * ("reservation.created" -> "sb.reservation").
 *
 * Modules: event_types.c (the type <-> payload table, namespace, topics),
 * producer.c, outbox.c, relay.c, inbox.c (decoding, dispatch, the inbox,
 * dead letters), consumer.c. */
#ifndef SB_EVENTS_H
#define SB_EVENTS_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "events.pb-c.h"
#include "sb/arena.h"
#include "sb/buf.h"
#include "sb/db.h"
#include "sb/jobs.h"
#include "sb/pg.h"
#include "sb/status.h"

typedef Sb__Events__EventEnvelope sb_event_envelope_t;

/* The common tables (sb_outbox, sb_inbox, sb_dead_letters: the common
 * migrations, common/migrations/); every service's database gets them at
 * start-up. */
sb_status_t sb_events_migrate(sb_pg_pool_t *pool, sb_buf_t *err);

/* ---- event types (event_types.c) ---- */

/* One of the platform's event types and its payload message. */
typedef struct sb_event_type {
    const char *type; /* "performance.approved" */
    const ProtobufCMessageDescriptor *payload;
} sb_event_type_t;
/* The platform's table (static; *n receives its length). */
const sb_event_type_t *sb_event_types(size_t *n);
/* The payload message of type, or NULL when type is not one of the
 * platform's. Static. */
const ProtobufCMessageDescriptor *sb_event_payload_of(const char *type);

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
/* The same for a base topic name ("sb.performance"). */
bool sb_topic_name(const char *base, char *out, size_t n);

/* ---- producer (producer.c) ---- */
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
sb_status_t sb_producer_send(sb_producer_t *p, const char *topic, const char *key, const void *val,
                             size_t len, const char *trace_id, int timeout_ms, sb_buf_t *err);
/* Whether a broker of the producer's cluster answers a metadata request
 * within timeout_ms (why says what failed when not). Safe beside sends. */
bool sb_producer_broker_up(sb_producer_t *p, int timeout_ms, sb_buf_t *why);
/* Creates the topics if missing (partitions, replication 1). */
sb_status_t sb_kafka_ensure_topics(const char *brokers, const char *const *topics, size_t n,
                                   int partitions, sb_buf_t *err);

/* ---- outbox (outbox.c) ---- */
/* Appends an event to the outbox on tx (which must be inside a transaction).
 * payload must be the type's message (sb_event_payload_of): INTERNAL
 * otherwise, and for a type the platform does not know. The envelope gets a
 * fresh event id, the current time, the thread's trace id and the service
 * name. event_id_out (37 bytes) receives the id if non-NULL. */
sb_status_t sb_outbox_add(sb_pg_conn_t *tx, const char *type, const char *aggregate_id,
                          const ProtobufCMessage *payload, char *event_id_out, sb_buf_t *err);
/* What a replay re-publishes: published events whose type starts with
 * type_prefix ("" = all), of one aggregate (NULL or "" = any) that occurred in
 * [since, until) (RFC 3339 the caller has validated; NULL or "" = open). */
typedef struct {
    const char *type_prefix;
    const char *aggregate_id;
    const char *since, *until;
} sb_outbox_filter_t;
/* How many were marked, and the event ids of the first
 * SB_OUTBOX_REPLAY_IDS of them (oldest first; arena-owned). */
#define SB_OUTBOX_REPLAY_IDS 100
typedef struct {
    int64_t count;
    char **ids;
    size_t n_ids;
} sb_outbox_replayed_t;
/* Marks the events f matches as unsent, so the relay publishes them again:
 * the same envelopes (event ids), in id order, so per aggregate in their
 * original order. On db (its transaction, if it has one; ids in db->arena,
 * detail of a failure in db->detail). */
sb_status_t sb_outbox_replay(sb_db_t *db, const sb_outbox_filter_t *f, sb_outbox_replayed_t *out);

/* ---- relay (relay.c) ---- */
/* PostgreSQL channel sb_outbox_add notifies (at commit) and the relay listens on. */
#define SB_OUTBOX_CHANNEL "sb_outbox"
/* The relay's row for a job runner (sb/jobs.h) whose arg is the
 * sb_producer_t: a session job under SB_LOCK_OUTBOX_RELAY (one relay per
 * database), woken by SB_OUTBOX_CHANNEL, at the latest every every_ms, with a
 * final round at stop. Every service runs it (sb_service_main). */
sb_job_t sb_outbox_relay_job(int every_ms);
/* One round of the relay on a connection of its own: publishes up to max
 * unsent rows; returns how many were published, or -1 with err set; 0 when
 * another relay of the database holds the relay lock. */
int sb_outbox_relay_once(sb_pg_pool_t *pool, sb_producer_t *p, int max, sb_buf_t *err);

/* ---- event tables, inbox (inbox.c) ---- */

/* What a handler gets besides its payload. Everything is borrowed for the
 * call; the arena is freed after the inbox transaction ended. */
typedef struct sb_event_ctx {
    const sb_event_envelope_t *env; /* event id, type, aggregate id, trace id ... */
    sb_arena_t *arena;              /* the event's: envelope, payload, query results, scratch */
    sb_db_t *db;                    /* queries run inside the inbox transaction */
    void *arg;                      /* the table's arg (a service's: its sb_service_t) */
    sb_buf_t reason;                /* set by sb_event_refuse */
} sb_event_ctx_t;

/* payload: the decoded payload message of the row's type (owned by the
 * event's arena). OK commits the effect and the inbox row together; any
 * other status rolls both back (see the policy above). */
typedef sb_status_t (*sb_event_handler_fn)(sb_event_ctx_t *ev, const void *payload);

/* A row of a service's event table. */
typedef struct sb_event_handler {
    const char *type;                          /* "performance.approved" */
    const ProtobufCMessageDescriptor *payload; /* the type's payload message */
    sb_event_handler_fn fn;
} sb_event_handler_t;

typedef struct sb_event_table {
    const sb_event_handler_t *rows; /* borrowed; static in a service */
    size_t n;
    void *arg; /* handed to every handler as ev->arg */
} sb_event_table_t;

/* OK when every row names a platform type once, with the platform's payload
 * for it, and a handler; otherwise INVALID_ARGUMENT and err names the row. */
sb_status_t sb_event_table_check(const sb_event_table_t *t, sb_buf_t *err);
/* The row for type, or NULL. */
const sb_event_handler_t *sb_event_table_find(const sb_event_table_t *t, const char *type);

/* For a handler: the event is malformed in a way no retry fixes (a field it
 * needs is missing or wrong). Records the reason (a message the sender may
 * read) and returns INVALID_ARGUMENT, which sends the event to the dead
 * letters. */
sb_status_t sb_event_refuse(sb_event_ctx_t *ev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

typedef enum sb_event_outcome {
    SB_EVENT_HANDLED,     /* the row's handler ran and committed */
    SB_EVENT_SKIPPED,     /* a platform type without a row: recorded, no effect */
    SB_EVENT_DUPLICATE,   /* the event id was already processed: nothing done */
    SB_EVENT_DEAD_LETTER, /* malformed: written to sb_dead_letters, not to the inbox */
    SB_EVENT_FAILED,      /* nothing recorded: may be retried */
} sb_event_outcome_t;

typedef struct sb_inbox_result {
    sb_event_outcome_t outcome;
    sb_buf_t reason; /* dead letter or failure: why, for the sender (no SQL) */
    sb_buf_t detail; /* failure: internal detail (SQL, library), for the log only */
} sb_inbox_result_t;
#define SB_INBOX_RESULT_INIT                                                                            \
    {                                                                                                   \
        SB_EVENT_FAILED, SB_BUF_INIT, SB_BUF_INIT                                                       \
    }
void sb_inbox_result_release(sb_inbox_result_t *res);

/* Handles one packed envelope that arrived from source ("kafka",
 * "DeliverEvent") on topic (NULL: the type's) through table t, exactly once
 * per event id, under the policy above. OK with outcome HANDLED, SKIPPED or
 * DUPLICATE; INVALID_ARGUMENT with outcome DEAD_LETTER (reason set); or the
 * failure's status with outcome FAILED (reason and detail set; a dead letter
 * that could not be written is a failure too). */
sb_status_t sb_inbox_handle(sb_pg_pool_t *pool, const sb_event_table_t *t, const char *source,
                            const char *topic, const void *bytes, size_t len, sb_inbox_result_t *res);
/* Work of the caller's that commits or rolls back with an event's effect (an
 * admin's audit record, sb_audit_record_on): fn runs in the inbox
 * transaction after the handler, on its connection, only when the event is
 * HANDLED (a duplicate or skipped event changed nothing); a failure of fn is
 * a failure of the event (rolled back, nothing recorded). */
typedef struct sb_inbox_also {
    sb_status_t (*fn)(sb_db_t *db, void *arg);
    void *arg;
} sb_inbox_also_t;
/* sb_inbox_handle for an event an admin hands over (DeliverEvent), with
 * also (NULL: none). */
sb_status_t sb_inbox_deliver(sb_pg_pool_t *pool, const sb_event_table_t *t, const char *source,
                             const void *bytes, size_t len, const sb_inbox_also_t *also,
                             sb_inbox_result_t *res);
/* Replays dead letter `id` (its stored envelope, bytes/len, from topic)
 * through t exactly as sb_inbox_handle would handle a delivery, except that
 * nothing new goes to sb_dead_letters: OK (HANDLED, SKIPPED or DUPLICATE)
 * also marks the row replayed (replayed_at, replayed_by = by) in the
 * transaction that applied the event, so the effect and the mark commit
 * together; a row replayed already is left as it is. INVALID_ARGUMENT with
 * outcome DEAD_LETTER: still malformed, the row keeps its place with the new
 * reason in error and one more replay_attempts. Any other status: a failure,
 * nothing recorded (may be retried). also: as for sb_inbox_deliver. */
sb_status_t sb_inbox_replay(sb_pg_pool_t *pool, const sb_event_table_t *t, int64_t id, const char *by,
                            const char *topic, const void *bytes, size_t len,
                            const sb_inbox_also_t *also, sb_inbox_result_t *res);
/* Writes the packed envelope to sb_dead_letters with why (the event id and
 * type filled in when it decodes). */
sb_status_t sb_dead_letter_add(sb_pg_pool_t *pool, const char *source, const char *topic,
                               const void *bytes, size_t len, const char *why, sb_buf_t *err);

/* ---- consumer (consumer.c) ---- */
typedef struct sb_consumer sb_consumer_t;
/* Checks t (sb_event_table_check), creates the topics of its types if
 * missing, joins consumer group `group` on them and handles events on
 * background threads: CONSUMER_WORKERS (default 4, 1-64) workers, each
 * partition always on the same one, so events of one partition are handled
 * in order and different partitions in parallel (consumer.c). t is copied;
 * its rows and arg must outlive the consumer. NULL with err on failure. */
sb_consumer_t *sb_consumer_start(const char *brokers, const char *group, sb_pg_pool_t *pool,
                                 const sb_event_table_t *t, sb_buf_t *err);
/* Stops: every worker finishes (and commits) the event it is handling, what
 * is queued is dropped uncommitted, then the consumer leaves the group;
 * joins every thread and frees. NULL is fine. */
void sb_consumer_stop(sb_consumer_t *c);
/* Events this consumer handled (skipped ones included), and redelivered ones
 * it dropped, so far. */
void sb_consumer_stats(const sb_consumer_t *c, uint64_t *handled, uint64_t *duplicates);
/* The lag of each partition assigned to c (its high watermark minus the next
 * offset c will handle): fn(arg, topic, partition, lag) per partition whose
 * figures are known; broker calls, when needed, wait up to timeout_ms.
 * Returns how many partitions were reported. Thread-safe (the health refresher). */
size_t sb_consumer_lag(sb_consumer_t *c, int timeout_ms,
                       void (*fn)(void *arg, const char *topic, int32_t partition, int64_t lag),
                       void *arg);

#endif
