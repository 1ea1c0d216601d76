/* The runner of a service's RPCs: what the flags of a method row ask for.
 *
 * sb_service_main registers the service's rows with sb_service_call as their
 * runner (sb_server_add_service_run). For each call it points ctx->db at the
 * service's pool, with the call's arena owning the results and ctx->detail
 * taking the detail, then:
 *
 *   SB_TX_NONE   runs the handler; each statement borrows a connection for
 *                itself alone (autocommit).
 *   SB_TX,       runs the handler in one transaction at the row's isolation
 *   SB_TX_READ   (READ ONLY for SB_TX_READ). The transaction opens at the
 *                handler's first statement, not before: field checks,
 *                password hashing or a call to another service ahead of it
 *                hold no connection, and most refusals never touch the pool.
 *                It commits when the handler returns OK; a refusal or an
 *                internal failure rolls it back. A serialization failure or a
 *                deadlock (ABORTED from the database at any statement or at
 *                COMMIT, which the handler returns as is) rolls back and runs
 *                the handler again from the start with a fresh response, up
 *                to MAX_ATTEMPTS times with jittered exponential backoff and
 *                never past the call's deadline; not when the handler
 *                committed part of its work itself (sb_db_commit), which must
 *                not run twice.
 *
 * Idempotency keys (.idempotent rows). A request whose `idempotency_key`
 * field is set (the gateway fills it from the Idempotency-Key header) is
 * answered once per (caller, method, key): the first transaction inserts the
 * key into sb_idempotency, with the SHA-256 of the packed request, before the
 * handler runs, and stores the answer (status, message, packed response) in
 * the same transaction after it. A twin arriving meanwhile blocks on that
 * uncommitted row (the primary key) until the first commits, then finds the
 * stored answer and replays it; if the first rolled back, the twin's insert
 * goes through and it runs as the first. The same key with another request
 * is refused with ALREADY_EXISTS (HTTP 409, which is what SPEC asks of a
 * reused key; FAILED_PRECONDITION would answer 400 through the one status
 * table). Refusals are stored too, so the same request gets the same answer,
 * status included; their effects are undone by rolling back to a savepoint
 * taken after the key was claimed. Not stored: internal failures and the
 * retryable refusals (UNAVAILABLE, ABORTED, DEADLINE_EXCEEDED), whose key
 * stays free for the retry. Keys live 24 hours: an older row is taken over
 * as if absent, and claims delete a bounded batch of expired rows now and
 * then (until the job table runs that periodically). Without a key the row
 * runs as any other. An idempotent row always runs in a read-write
 * transaction.
 *
 * A handler that must not hold a transaction across a call to another system
 * (a payment: its PENDING row committed before the provider is asked) commits
 * early with sb_db_commit: the claim commits with that first part, so a twin
 * arriving afterwards is told the request is in progress (ABORTED, 409)
 * instead of waiting; what the handler does next runs in a new transaction,
 * in which the answer is stored. After such an early commit a refusal is
 * stored in a transaction of its own; an internal failure or a retryable
 * refusal deletes the claim (the handler's committed part stays: the handler
 * must make a second run safe), so the key is free for the retry; a claim
 * whose process died before answering is taken over by the same request
 * after IDEMPOTENCY_STALE_S (300). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sb/api.h"
#include "sb/config.h"
#include "sb/db.h"
#include "sb/log.h"
#include "sb/service.h"
#include "sb/util.h"
#include "sb/valid.h"

#define MAX_ATTEMPTS 10
#define IDEM_FIELD "idempotency_key"
#define IDEM_KEY_MAX 255
#define IDEM_TTL "interval '24 hours'"
#define IDEM_EXPIRE_ONE_IN 32 /* claims that also delete expired keys */

static const sb_migration_t idempotency_migrations[] = {
    {1, "idempotency",
     "CREATE TABLE sb_idempotency ("
     "  caller text NOT NULL," /* the caller's user id, '' when anonymous */
     "  method text NOT NULL," /* /pkg.Service/Method */
     "  key text NOT NULL,"
     "  request_hash bytea NOT NULL," /* SHA-256 of the packed request */
     "  status int,"                  /* NULL only while the first request runs */
     "  message text,"
     "  response bytea,"
     "  created_at timestamptz NOT NULL DEFAULT now(),"
     "  PRIMARY KEY (caller, method, key));"
     "CREATE INDEX sb_idempotency_created ON sb_idempotency (created_at);"},
};

/* $1 caller, $2 method, $3 key, $4 the packed request in hex, $5 seconds
 * after which an unanswered claim is stale. One row when the key is ours
 * (new, or expired and taken over, or claimed early by a process that never
 * answered, for the same request: see idem_stale_s). */
static const sb_pg_stmt_t idem_claim = {
    "sb_idem_claim",
    "INSERT INTO sb_idempotency AS i (caller, method, key, request_hash)"
    " VALUES ($1, $2, $3, sha256(decode($4, 'hex')))"
    " ON CONFLICT (caller, method, key) DO UPDATE SET request_hash = EXCLUDED.request_hash,"
    " status = NULL, message = NULL, response = NULL, created_at = now()"
    " WHERE i.created_at < now() - " IDEM_TTL
    " OR (i.status IS NULL AND i.request_hash = EXCLUDED.request_hash"
    "     AND i.created_at < now() - $5::int * interval '1 second') RETURNING 1"};

static const sb_pg_stmt_t idem_stored = {
    "sb_idem_stored",
    "SELECT request_hash = sha256(decode($4, 'hex')), status, message, encode(response, 'hex')"
    " FROM sb_idempotency WHERE caller = $1 AND method = $2 AND key = $3"};

static const sb_pg_stmt_t idem_save = {
    "sb_idem_save",
    "UPDATE sb_idempotency SET status = $4::int, message = $5, response = decode($6, 'hex')"
    " WHERE caller = $1 AND method = $2 AND key = $3"};

static const sb_pg_stmt_t idem_unclaim = {
    "sb_idem_unclaim",
    "DELETE FROM sb_idempotency WHERE caller = $1 AND method = $2 AND key = $3 AND status IS NULL"};

static const sb_pg_stmt_t idem_expire = {
    "sb_idem_expire",
    "DELETE FROM sb_idempotency WHERE ctid = ANY (ARRAY(SELECT ctid FROM sb_idempotency"
    " WHERE created_at < now() - " IDEM_TTL " LIMIT 100 FOR UPDATE SKIP LOCKED))"};

sb_status_t sb_idempotency_migrate(sb_pg_pool_t *pool, sb_buf_t *err)
{
    return sb_pg_migrate(pool, "idempotency", idempotency_migrations,
                         sizeof idempotency_migrations / sizeof idempotency_migrations[0], err);
}

/* ------------------------------------------------------------ idempotency */

typedef struct idem {
    const char *key;     /* NULL: the call runs without one */
    const char *req_hex; /* the packed request, hex (arena) */
} idem_t;

static char *to_hex(sb_arena_t *a, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *s = sb_arena_alloc(a, n * 2 + 1);
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = digits[p[i] >> 4];
        s[2 * i + 1] = digits[p[i] & 15];
    }
    return s;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Bytes of a lower-case hex string, in a; false when it is not one. */
static bool from_hex(sb_arena_t *a, const char *s, uint8_t **out, size_t *n)
{
    size_t len = strlen(s);
    if (len % 2)
        return false;
    uint8_t *p = sb_arena_alloc(a, len / 2 + 1);
    for (size_t i = 0; i < len / 2; i++) {
        int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        p[i] = (uint8_t)(hi << 4 | lo);
    }
    *out = p;
    *n = len / 2;
    return true;
}

static char *packed_hex(sb_arena_t *a, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *p = sb_arena_alloc(a, n + 1);
    protobuf_c_message_pack(m, p);
    return to_hex(a, p, n);
}

/* The key of an idempotent row's request, or NULL when it has none (not
 * idempotent, no such field, empty). A key that cannot be stored is refused. */
static sb_status_t idem_prepare(sb_rpc_ctx_t *ctx, const sb_rpc_method_t *row,
                                const ProtobufCMessage *in, idem_t *id)
{
    *id = (idem_t){0};
    if (!row->idempotent)
        return SB_OK;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(in->descriptor, IDEM_FIELD);
    if (!f || f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED)
        return SB_OK;
    const char *key = *(const char *const *)(const void *)((const char *)in + f->offset);
    if (!key || !*key)
        return SB_OK;
    if (strlen(key) > IDEM_KEY_MAX || !sb_valid_utf8_text(key, false, NULL))
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "Idempotency-Key must be 1 to %d bytes of text",
                           IDEM_KEY_MAX);
    id->key = key;
    id->req_hex = packed_hex(ctx->arena, in);
    return SB_OK;
}

/* The stored answer of a key another request claimed first, into out/ctx. */
static sb_status_t idem_replay(sb_rpc_ctx_t *ctx, const PGresult *r, ProtobufCMessage *out)
{
    if (strcmp(sb_db_get(r, 0, 0), "t") != 0)
        return sb_rpc_fail(ctx, SB_ALREADY_EXISTS, "Idempotency-Key reused with a different request");
    const char *status = sb_db_get(r, 0, 1);
    if (!status) /* claimed and committed by a handler that commits early */
        return sb_rpc_fail(ctx, SB_ABORTED,
                           "a request with this Idempotency-Key is in progress; try again");
    sb_status_t st = (sb_status_t)strtol(status, NULL, 10);
    if (st != SB_OK) {
        const char *msg = sb_db_get(r, 0, 2);
        return sb_rpc_fail(ctx, st, "%s", msg ? msg : sb_status_name(st));
    }
    uint8_t *bytes;
    size_t n;
    const char *hex = sb_db_get(r, 0, 3);
    ProtobufCMessage *m = NULL;
    if (hex && from_hex(ctx->arena, hex, &bytes, &n))
        m = protobuf_c_message_unpack(out->descriptor, sb_arena_pb_allocator(ctx->arena), n, bytes);
    if (!m)
        return sb_rpc_error(ctx, SB_INTERNAL, "stored answer of an Idempotency-Key undecodable");
    memcpy(out, m, out->descriptor->sizeof_message); /* members live in the arena */
    sb_info("%s: answer of Idempotency-Key replayed", ctx->method);
    return SB_OK;
}

/* A claim committed early whose handler never answered (its process died
 * between the early commit and the answer) would tell every retry "in
 * progress" for 24 hours. After IDEMPOTENCY_STALE_S (300; longer than any
 * call's deadline) the same request takes it over and runs again: a
 * handler that commits early finds what its first run committed (payment:
 * the payment made under the key). */
static int idem_stale_s(void)
{
    static _Atomic int stale;
    if (!stale)
        stale = (int)sb_cfg_int("IDEMPOTENCY_STALE_S", 300, 1, 86400);
    return stale;
}

/* Claims the key in the call's transaction, or replays what is stored for
 * it (*replayed). After a claim, savepoint sb_call marks where the
 * handler's work starts. */
static sb_status_t idem_claim_or_replay(sb_rpc_ctx_t *ctx, const idem_t *id, ProtobufCMessage *out,
                                        bool *replayed)
{
    sb_db_t *db = ctx->db;
    PGresult *r;
    char stale[16];
    snprintf(stale, sizeof stale, "%d", idem_stale_s());
    sb_status_t st =
        sb_db_exec(db, &idem_claim, &r, ctx->user_id, ctx->method, id->key, id->req_hex, stale);
    if (st != SB_OK)
        return st;
    if (PQntuples(r) == 1) {
        unsigned dice;
        sb_random_bytes(&dice, sizeof dice);
        if (dice % IDEM_EXPIRE_ONE_IN == 0 && (st = sb_db_exec(db, &idem_expire, NULL)) != SB_OK)
            return st;
        return sb_db_sql(db, "SAVEPOINT sb_call", NULL);
    }
    if ((st = sb_db_exec(db, &idem_stored, &r, ctx->user_id, ctx->method, id->key, id->req_hex)) !=
        SB_OK)
        return st;
    if (PQntuples(r) == 0) { /* expired and deleted between the two statements: claim again */
        db->conflict = true;
        return sb_rpc_error(ctx, SB_ABORTED, "Idempotency-Key deleted while being claimed");
    }
    *replayed = true;
    return idem_replay(ctx, r, out);
}

static sb_status_t idem_store(sb_rpc_ctx_t *ctx, const idem_t *id, sb_status_t st,
                              const ProtobufCMessage *out)
{
    char code[16];
    snprintf(code, sizeof code, "%d", (int)st);
    return sb_db_exec(ctx->db, &idem_save, NULL, ctx->user_id, ctx->method, id->key, code,
                      st == SB_OK ? NULL : ctx->err.buf,
                      st == SB_OK ? packed_hex(ctx->arena, out) : NULL);
}

static bool retryable(sb_status_t st)
{
    return st == SB_UNAVAILABLE || st == SB_ABORTED || st == SB_DEADLINE_EXCEEDED;
}

/* A refusal of an idempotent call: its effects undone, its answer kept. A
 * failure here leaves the key free (the refusal is still the answer). */
static void idem_keep_refusal(sb_rpc_ctx_t *ctx, const idem_t *id, sb_status_t refusal)
{
    sb_db_t *db = ctx->db;
    sb_status_t st = SB_OK;
    if (db->committed)
        sb_db_rollback(db); /* the claim was committed early: store in a new transaction */
    else
        st = sb_db_sql(db, "ROLLBACK TO SAVEPOINT sb_call", NULL);
    if (st == SB_OK)
        st = idem_store(ctx, id, refusal, NULL);
    if (st == SB_OK)
        st = sb_db_commit(db);
    if (st != SB_OK)
        sb_warn("%s: refusal of an Idempotency-Key not stored (%s): %s", ctx->method, sb_status_name(st),
                ctx->detail.buf);
}

/* A claim committed early by a handler that then failed without a stored
 * answer: deleted, so the key is free for the retry (a failure here leaves it
 * until it expires; twins are told "in progress" meanwhile). */
static void idem_release(sb_rpc_ctx_t *ctx, const idem_t *id)
{
    sb_db_t *db = ctx->db;
    sb_db_rollback(db);
    sb_status_t st = sb_db_exec(db, &idem_unclaim, NULL, ctx->user_id, ctx->method, id->key);
    if (st == SB_OK)
        st = sb_db_commit(db);
    if (st != SB_OK)
        sb_warn("%s: Idempotency-Key claimed early not released (%s): %s", ctx->method,
                sb_status_name(st), ctx->detail.buf);
}

/* ------------------------------------------------------------ the runner */

static const char *begin_sql(const sb_rpc_method_t *row, bool write)
{
    static const char *const rw[] = {
        "BEGIN ISOLATION LEVEL READ COMMITTED",
        "BEGIN ISOLATION LEVEL REPEATABLE READ",
        "BEGIN ISOLATION LEVEL SERIALIZABLE",
    };
    static const char *const ro[] = {
        "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY",
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY",
    };
    int iso = row->iso >= SB_PG_READ_COMMITTED && row->iso <= SB_PG_SERIALIZABLE ? row->iso : 0;
    return row->tx == SB_TX_READ && !write ? ro[iso] : rw[iso];
}

/* One run of the handler in its transaction (claim, handler, store, commit). */
static sb_status_t run_once(sb_rpc_ctx_t *ctx, const sb_rpc_method_t *row, const idem_t *id,
                            const ProtobufCMessage *in, ProtobufCMessage *out)
{
    sb_status_t st;
    bool replayed = false;
    if (id->key && ((st = idem_claim_or_replay(ctx, id, out, &replayed)) != SB_OK || replayed))
        return st;
    st = row->fn(ctx, in, out);
    if (st == SB_OK) {
        if (id->key && (st = idem_store(ctx, id, SB_OK, out)) != SB_OK)
            return st;
        return sb_db_commit(ctx->db);
    }
    if (id->key && ctx->err.len && !retryable(st))
        idem_keep_refusal(ctx, id, st);
    else if (id->key && ctx->db->committed)
        idem_release(ctx, id);
    return st;
}

/* Microseconds to wait before attempt `attempt` + 1, or -1 when no further
 * attempt is due: only after a database conflict the handler passed on as
 * is, nothing of it committed, attempts and deadline left. */
static long backoff_us(const sb_rpc_ctx_t *ctx, const sb_db_t *db, sb_status_t st, int attempt)
{
    if (st != SB_ABORTED || !db->conflict || ctx->err.len || db->committed || attempt >= MAX_ATTEMPTS)
        return -1;
    unsigned r;
    sb_random_bytes(&r, sizeof r);
    unsigned base = attempt < 6 ? 1000u << attempt : 50000u;
    long us = (long)(base + r % (base + 1000u));
    if (ctx->deadline_ms != INT64_MAX && sb_now_ms() + us / 1000 + 1 >= ctx->deadline_ms)
        return -1;
    return us;
}

/* Rows the contract marks rate_limited (login, refresh) are limited here
 * too, not only at the gateway: a client calling the service directly gets
 * the same LOGIN_RATE_LIMIT attempts per minute per client address. */
static sb_status_t rate_limited(sb_rpc_ctx_t *ctx, sb_service_t *svc)
{
    static long limit;
    if (!ctx->api || !ctx->api->rate_limited)
        return SB_OK;
    if (!limit)
        limit = sb_cfg_int("LOGIN_RATE_LIMIT", 20, 1, 1000000);
    sb_buf_t why = SB_BUF_INIT;
    sb_status_t st = sb_rate_limit(svc->redis, ctx->method, ctx->client_ip, limit, &why);
    if (st != SB_OK)
        st = sb_rpc_fail(ctx, st, "%s", why.buf);
    sb_buf_release(&why);
    return st;
}

sb_status_t sb_service_call(sb_rpc_ctx_t *ctx, const sb_rpc_method_t *row, const ProtobufCMessage *in,
                            ProtobufCMessage *out)
{
    sb_service_t *svc = ctx->service_data;
    sb_db_t db = {
        .arena = ctx->arena,
        .detail = &ctx->detail,
        .pool = svc->pg,
        .deadline_ms = ctx->deadline_ms == INT64_MAX ? 0 : ctx->deadline_ms,
    };
    ctx->db = &db;
    idem_t id;
    sb_status_t st = rate_limited(ctx, svc);
    if (st == SB_OK)
        st = idem_prepare(ctx, row, in, &id);
    if (st != SB_OK)
        goto out;
    if (row->tx == SB_TX_NONE && !id.key) {
        st = row->fn(ctx, in, out);
        goto out;
    }
    for (int attempt = 1;; attempt++) {
        db.begin = begin_sql(row, id.key != NULL);
        db.conflict = db.committed = false;
        st = run_once(ctx, row, &id, in, out);
        sb_db_rollback(&db); /* whatever is still open */
        long us = backoff_us(ctx, &db, st, attempt);
        if (us < 0)
            break;
        sb_debug("%s: transaction conflict (attempt %d): %s; running it again", ctx->method, attempt,
                 ctx->detail.buf);
        sb_buf_reset(&ctx->detail);
        protobuf_c_message_init(out->descriptor, out);
        usleep((useconds_t)us);
    }
out:
    sb_db_rollback(&db); /* a handler never leaves a connection behind */
    ctx->db = NULL;
    return st;
}
