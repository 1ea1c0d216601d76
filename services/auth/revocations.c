/* Revocations: the durable denylist and its Redis cache.
 *
 * Every revocation of access tokens is a row of `revocations` (migration
 * 0002): a token (logout: its jti) or a user ("tokens issued before T" for a
 * password change, every token for a withdrawal). Readers never see the
 * table: every hop asks Redis (sb/authn.h has the keys), so Redis must hold
 * every unexpired row, and says so with a marker key.
 *
 * Writing (auth_revoke_token, auth_revoke_user). The row is written in the
 * transaction of the operation that revokes (Logout's method-row
 * transaction; the inbox transaction of the member event), and its Redis
 * entry in the same transaction, before COMMIT. Redis first and the commit
 * after is what makes "committed" imply "in Redis, or Redis has since lost
 * its memory (and the marker with it)": had the entry been written after
 * COMMIT, a Redis that stalled just then and came back with its memory (the
 * marker still there) would lack a committed revocation with nothing to tell
 * anyone. The SET and a PUBLISH of the entry on the namespace's channel are
 * one Lua script: every process's local denylist (sb/denylist.h) hears of
 * it at once, and never of an entry Redis did not take. When Redis cannot take the entry the transaction
 * rolls back and nothing was revoked: Logout answers UNAVAILABLE (the client retries, its tokens still
 * valid) and the event is retried. The price: a COMMIT that fails after the entry was written leaves an
 * entry without a row, which refuses a token that the client wanted refused anyway, until it expires or
 * Redis restarts.
 *
 * Rebuilding (auth_denylist_rebuild; at start-up and by the denylist job every
 * every second, main.c). No marker in Redis means Redis restarted empty (it
 * keeps nothing on disk). Under SB_LOCK_AUTH_DENYLIST taken exclusively
 * (writers hold it shared: the rebuild reads the table only after every
 * revocation in flight has committed, and none is written until it is done)
 * the job loads every unexpired row into Redis, REBUILD_BATCH entries per
 * round trip (one Lua script each, with their TTLs), then sets the marker.
 * Redis may restart again in the middle: a nonce stored first
 * (sb:deny-rebuild[:ns]) must still be there for each batch and for the
 * marker, so a rebuild that straddles a restart never marks the new, partial
 * Redis complete; the next tick starts over. Until the marker is back every
 * authenticated call is refused with UNAVAILABLE (503): fail closed, for
 * about a second.
 *
 * Cleaning (the same job, every CLEANUP_EVERY_MS): rows whose tokens have all
 * expired are deleted; their Redis entries expire by themselves (PX). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "sb/authn.h"
#include "sb/db.h"
#include "sb/denylist.h"
#include "sb/events.h"
#include "sb/locks.h"
#include "sb/log.h"
#include "sb/util.h"

#define REBUILD_BATCH 1000
#define CLEANUP_BATCH 5000
#define CLEANUP_EVERY_MS 60000
#define REBUILD_NONCE_TTL_MS 120000

/* A row as its Redis entry: key, value, time to live in ms. */
#define ENTRY_COLUMNS                                                                                   \
    "CASE kind WHEN 'token' THEN '" SB_DENY_TOKEN_PREFIX "' ELSE '" SB_DENY_USER_PREFIX "' END"         \
    " || subject,"                                                                                      \
    " CASE WHEN kind = 'token' THEN '1' WHEN issued_before IS NULL THEN '" SB_DENY_USER_ALL "'"         \
    " ELSE round(extract(epoch FROM issued_before) * 1000)::bigint::text END,"                          \
    " greatest(1, ceil(extract(epoch FROM expires_at - clock_timestamp()) * 1000))::bigint::text"
enum { C_KEY, C_VALUE, C_TTL_MS };

static const sb_pg_stmt_t stmt_writer_lock = {
    "auth_deny_writer_lock", "SELECT pg_advisory_xact_lock_shared(" SB_LOCK_AUTH_DENYLIST ")"};
static const sb_pg_stmt_t stmt_rebuild_lock = {
    "auth_deny_rebuild_lock", "SELECT pg_advisory_xact_lock(" SB_LOCK_AUTH_DENYLIST ")"};

static const sb_pg_stmt_t stmt_revoke_token = {
    "auth_revoke_token",
    "INSERT INTO revocations AS r (kind, subject, reason, expires_at)"
    " VALUES ('token', $1, 'logout', to_timestamp($2::bigint))"
    " ON CONFLICT (kind, subject) DO UPDATE SET expires_at = greatest(r.expires_at, EXCLUDED.expires_at)"
    " RETURNING " ENTRY_COLUMNS};

/* A second revocation of a user merges with the first (unless that one has
 * expired): "every token" stays every token, a later cutoff wins, and the
 * row lives as long as the longer of the two. */
static const sb_pg_stmt_t stmt_revoke_user = {
    "auth_revoke_user",
    "INSERT INTO revocations AS r (kind, subject, issued_before, reason, expires_at)"
    " VALUES ('user', $1, $2::timestamptz, $3, now() + $4::int * interval '1 second')"
    " ON CONFLICT (kind, subject) DO UPDATE SET"
    " issued_before = CASE WHEN r.expires_at <= now() THEN EXCLUDED.issued_before"
    "   WHEN r.issued_before IS NULL OR EXCLUDED.issued_before IS NULL THEN NULL"
    "   ELSE greatest(r.issued_before, EXCLUDED.issued_before) END,"
    " reason = CASE WHEN r.issued_before IS NULL AND r.expires_at > now() THEN r.reason"
    "   ELSE EXCLUDED.reason END,"
    " expires_at = greatest(r.expires_at, EXCLUDED.expires_at)"
    " RETURNING " ENTRY_COLUMNS};

/* One page of the unexpired rows, after the (kind, subject) cursor. */
static const sb_pg_stmt_t stmt_page = {"auth_deny_page",
                                       "SELECT " ENTRY_COLUMNS ", kind, subject FROM revocations"
                                       " WHERE expires_at > now() AND (kind, subject) > ($1, $2)"
                                       " ORDER BY kind, subject LIMIT 1000"} /* REBUILD_BATCH */;
enum { C_KIND = C_TTL_MS + 1, C_SUBJECT };

static const sb_pg_stmt_t stmt_cleanup = {
    "auth_deny_cleanup",
    "DELETE FROM revocations WHERE (kind, subject) IN (SELECT kind, subject FROM revocations"
    " WHERE expires_at <= now() LIMIT 5000)"} /* CLEANUP_BATCH */;

/* ARGV: the nonce key, the nonce, then "key\tvalue\tpx\n" lines. -1 when the
 * nonce is gone (Redis restarted during the rebuild). */
static const char lua_batch[] =
    "if redis.call('GET', ARGV[1]) ~= ARGV[2] then return -1 end "
    "local n = 0 "
    "for k, v, px in string.gmatch(ARGV[3], '([^\\t\\n]+)\\t([^\\t\\n]+)\\t([^\\t\\n]+)\\n') do "
    "redis.call('SET', k, v, 'PX', px) n = n + 1 end "
    "return n";
/* ARGV: the nonce key, the nonce, the marker key, its value. 0 when the
 * nonce is gone. */
static const char lua_finish[] = "if redis.call('GET', ARGV[1]) ~= ARGV[2] then return 0 end "
                                 "redis.call('SET', ARGV[3], ARGV[4]) redis.call('DEL', ARGV[1]) "
                                 "return 1";

/* ---------------------------------------------------------------- writing */

/* KEYS[1] = ARGV[1] PX ARGV[2], and the entry published on the channel
 * ARGV[3] as "<key>\t<value>\t<px>" (sb/denylist.h): one script, so an
 * entry is never stored unannounced nor announced unstored. */
static const char lua_put[] =
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "redis.call('PUBLISH', ARGV[3], KEYS[1] .. '\\t' .. ARGV[1] .. '\\t' .. ARGV[2]) "
    "return 1";

/* Redis entry of the row r (ENTRY_COLUMNS) written and published to the
 * local denylists; UNAVAILABLE with the detail when Redis cannot take it. */
static sb_status_t put_entry(sb_db_t *db, sb_redis_t *redis, const PGresult *r)
{
    char channel[96];
    sb_denylist_channel(channel, sizeof channel);
    sb_buf_t err = SB_BUF_INIT;
    redisReply *rep = NULL;
    sb_status_t st =
        sb_redis_call(redis, &rep, &err, "EVAL %s 1 %s %s %s %s", lua_put, PQgetvalue(r, 0, C_KEY),
                      PQgetvalue(r, 0, C_VALUE), PQgetvalue(r, 0, C_TTL_MS), channel);
    if (st == SB_OK && rep->type == REDIS_REPLY_ERROR) {
        sb_buf_addf(&err, "redis refused: %s", rep->str);
        st = SB_UNAVAILABLE;
    }
    if (st != SB_OK)
        sb_buf_addf(db->detail, "cannot write denylist entry %s: %s", PQgetvalue(r, 0, C_KEY), err.buf);
    if (rep)
        freeReplyObject(rep);
    sb_buf_release(&err);
    return st;
}

sb_status_t auth_revoke_token(sb_db_t *db, sb_redis_t *redis, const char *jti, int64_t exp_s)
{
    char exp[24];
    snprintf(exp, sizeof exp, "%lld", (long long)exp_s);
    PGresult *r;
    sb_status_t st = sb_db_exec(db, &stmt_writer_lock, NULL);
    if (st == SB_OK && (st = sb_db_exec(db, &stmt_revoke_token, &r, jti, exp)) == SB_OK)
        st = put_entry(db, redis, r);
    return st;
}

sb_status_t auth_revoke_user(sb_db_t *db, sb_redis_t *redis, const char *user_id, const char *before,
                             const char *reason, long ttl_s)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%ld", ttl_s);
    PGresult *r;
    sb_status_t st = sb_db_exec(db, &stmt_writer_lock, NULL);
    if (st == SB_OK &&
        (st = sb_db_exec(db, &stmt_revoke_user, &r, user_id, before, reason, ttl)) == SB_OK)
        st = put_entry(db, redis, r);
    return st;
}

/* ---------------------------------------------------------------- rebuilding */

/* The nonce key of this namespace ("sb:deny-rebuild[:ns]"). */
static void nonce_key(char *out, size_t n)
{
    const char *ns = sb_namespace();
    snprintf(out, n, "sb:deny-rebuild%s%s", *ns ? ":" : "", ns);
}

/* One command whose answer must be an integer, into *v. */
static bool redis_int(sb_redis_t *redis, sb_buf_t *err, long long *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = NULL;
    sb_status_t st = sb_redis_vcall(redis, &rep, err, fmt, ap);
    va_end(ap);
    bool ok = st == SB_OK && rep->type == REDIS_REPLY_INTEGER;
    if (ok)
        *v = rep->integer;
    else if (st == SB_OK)
        sb_buf_addf(err, "unexpected redis reply: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
    if (rep)
        freeReplyObject(rep);
    return ok;
}

sb_status_t auth_denylist_rebuild(sb_db_t *db, sb_redis_t *redis, bool *redis_down, long *loaded)
{
    char marker[96], nkey[96], nonce[SB_UUID_LEN + 1];
    sb_denylist_marker(marker, sizeof marker);
    nonce_key(nkey, sizeof nkey);
    *redis_down = false;
    *loaded = -1; /* nothing to do */
    sb_buf_t err = SB_BUF_INIT;
    sb_buf_t lines = SB_BUF_INIT;
    sb_status_t st;
    long long n;
    if (!redis_int(redis, &err, &n, "EXISTS %s", marker))
        goto out_redis;
    if (n == 1)
        goto out;
    /* Missing: wait for the revocations in flight, then check again (another
     * replica may have rebuilt while we waited). */
    if ((st = sb_db_exec(db, &stmt_rebuild_lock, NULL)) != SB_OK)
        goto out_status;
    if (!redis_int(redis, &err, &n, "EXISTS %s", marker))
        goto out_redis;
    if (n == 1)
        goto out;
    int64_t t0 = sb_mono_ns();
    sb_warn("denylist incomplete in Redis (no %s): rebuilding it from the revocations table", marker);
    sb_uuid_v4(nonce);
    redisReply *rep = NULL;
    if (sb_redis_call(redis, &rep, &err, "SET %s %s PX %d", nkey, nonce, REBUILD_NONCE_TTL_MS) != SB_OK)
        goto out_redis;
    freeReplyObject(rep);
    long total = 0;
    char kind[16] = "", subject[128] = ""; /* the cursor */
    for (;;) {
        /* each page's result in an arena of its own: memory stays one page */
        sb_db_t page = *db;
        page.arena = sb_arena_new();
        PGresult *r;
        st = sb_db_exec(&page, &stmt_page, &r, kind, subject);
        int rows = st == SB_OK ? PQntuples(r) : 0;
        if (rows > 0) {
            snprintf(kind, sizeof kind, "%s", PQgetvalue(r, rows - 1, C_KIND));
            snprintf(subject, sizeof subject, "%s", PQgetvalue(r, rows - 1, C_SUBJECT));
        }
        sb_buf_reset(&lines);
        for (int i = 0; i < rows; i++)
            sb_buf_addf(&lines, "%s\t%s\t%s\n", PQgetvalue(r, i, C_KEY), PQgetvalue(r, i, C_VALUE),
                        PQgetvalue(r, i, C_TTL_MS));
        sb_arena_free(page.arena);
        if (st != SB_OK)
            goto out_status;
        if (rows == 0)
            break;
        if (!redis_int(redis, &err, &n, "EVAL %s 0 %s %s %b", lua_batch, nkey, nonce, lines.buf,
                       lines.len))
            goto out_redis;
        if (n < 0) {
            sb_buf_adds(&err, "Redis restarted during the rebuild (its nonce is gone)");
            goto out_redis;
        }
        total += rows;
        if (rows < REBUILD_BATCH)
            break;
    }
    char value[96], when[32];
    sb_time_rfc3339(sb_now_ms(), when);
    snprintf(value, sizeof value, "rebuilt %s, %ld entries", when, total);
    if (!redis_int(redis, &err, &n, "EVAL %s 0 %s %s %s %s", lua_finish, nkey, nonce, marker, value))
        goto out_redis;
    if (n != 1) {
        sb_buf_adds(&err, "Redis restarted during the rebuild (its nonce is gone)");
        goto out_redis;
    }
    *loaded = total;
    sb_info("denylist rebuilt in Redis: %ld revocations in %lld ms; %s set", total,
            (long long)((sb_mono_ns() - t0) / 1000000), marker);
out:
    st = SB_OK;
out_status:
    sb_buf_release(&lines);
    sb_buf_release(&err);
    return st;
out_redis:
    *redis_down = true;
    sb_buf_addf(db->detail, "denylist rebuild: %s", err.buf);
    st = SB_UNAVAILABLE;
    goto out_status;
}

/* Deletes up to CLEANUP_BATCH expired revocations; *more when there may be
 * others. */
static sb_status_t cleanup(sb_job_ctx_t *job, bool *more)
{
    PGresult *r;
    sb_status_t st = sb_db_exec(job->db, &stmt_cleanup, &r);
    if (st != SB_OK)
        return st;
    long n = sb_db_affected(r);
    if (n > 0)
        sb_info("revocations: %ld expired rows deleted", n);
    *more = n == CLEANUP_BATCH;
    return SB_OK;
}

/* The denylist job: a rebuild when the marker is missing. While Redis does
 * not answer there is nothing to rebuild into: the tick succeeds (no
 * backoff), so the rebuild starts within a second of Redis coming
 * back; redis.c logs the outage itself. Then, every CLEANUP_EVERY_MS (or at
 * once while a batch was full), the expired rows go. */
sb_status_t auth_denylist_job(sb_job_ctx_t *job)
{
    static _Thread_local int64_t next_cleanup_ns; /* the job's own thread */
    bool down;
    long loaded;
    sb_status_t st = auth_denylist_rebuild(job->db, sb_job_service(job)->redis, &down, &loaded);
    if (st != SB_OK && !down)
        return st;
    if (st != SB_OK) {
        sb_debug("%s", job->db->detail->buf);
        sb_buf_reset(job->db->detail);
    }
    if (sb_mono_ns() < next_cleanup_ns)
        return SB_OK;
    bool more = false;
    if ((st = cleanup(job, &more)) != SB_OK)
        return st;
    next_cleanup_ns = more ? 0 : sb_mono_ns() + (int64_t)CLEANUP_EVERY_MS * 1000000;
    job->again = more;
    return SB_OK;
}
