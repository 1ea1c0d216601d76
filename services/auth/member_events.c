/* sb.member events that end sessions. Runs inside the inbox transaction
 * (sb/events.h): a failure rolls back and the event comes again, so every
 * step here is idempotent.
 *   member.withdrawn         every refresh token revoked, and the user's
 *                            access tokens denied (sb:deny-user:<id>) for as
 *                            long as an access token can live
 *   member.password_changed  every refresh token revoked */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "sb/log.h"

static const sb_pg_stmt_t stmt_revoke_user = {
    "auth_refresh_revoke_user",
    "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1::uuid AND revoked_at IS NULL"};

static sb_status_t revoke_user(sb_pg_conn_t *tx, const char *user_id, long long *n, sb_buf_t *err)
{
    sb_status_t st = auth_lock_user(tx, user_id, err); /* see tokens.c */
    if (st != SB_OK)
        return st;
    const char *p[] = {user_id};
    PGresult *r = sb_pg_exec(tx, &stmt_revoke_user, 1, p);
    st = sb_pg_check(tx, r, err);
    if (st == SB_OK)
        *n = atoll(PQcmdTuples(r));
    PQclear(r);
    return st;
}

/* An event we cannot read is not retried: INVALID_ARGUMENT sends it to the
 * dead letters. */
static sb_status_t bad_event(const sb_event_envelope_t *ev, const char *why, sb_buf_t *err)
{
    sb_buf_addf(err, "%s %s: %s", ev->type, ev->event_id, why);
    sb_warn("event %s %s refused: %s", ev->type, ev->event_id, why);
    return SB_INVALID_ARGUMENT;
}

static sb_status_t on_withdrawn(sb_pg_conn_t *tx, const sb_event_envelope_t *ev,
                                sb_service_t *svc, sb_buf_t *err)
{
    Sb__Events__MemberWithdrawn *m =
        sb__events__member_withdrawn__unpack(NULL, ev->payload.len, ev->payload.data);
    if (!m)
        return bad_event(ev, "undecodable MemberWithdrawn payload", err);
    sb_status_t st;
    long long n = 0;
    if (!sb_valid_uuid(m->user_id)) {
        st = bad_event(ev, "MemberWithdrawn without a user id", err);
        goto out_free;
    }
    if ((st = revoke_user(tx, m->user_id, &n, err)) != SB_OK) {
        sb_warn("member.withdrawn %s: cannot revoke refresh tokens: %s", ev->event_id, err->buf);
        goto out_free;
    }
    /* Inside the transaction: if Redis is down the event is retried, and
     * nothing was committed. */
    long ttl = auth_config_of(svc)->access_ttl_s;
    sb_buf_t rerr = SB_BUF_INIT;
    redisReply *r =
        sb_redis_cmd(svc->redis, &rerr, "SET sb:deny-user:%s 1 EX %ld", m->user_id, ttl);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        sb_buf_addf(err, "cannot deny the access tokens of %s: %s", m->user_id,
                    r ? r->str : rerr.buf);
        sb_warn("member.withdrawn %s: %s", ev->event_id, err->buf);
        st = SB_UNAVAILABLE;
    } else {
        sb_info("member %s withdrawn: %lld refresh tokens revoked, access tokens denied for %lds",
                m->user_id, n, ttl);
    }
    if (r)
        freeReplyObject(r);
    sb_buf_release(&rerr);
out_free:
    sb__events__member_withdrawn__free_unpacked(m, NULL);
    return st;
}

static sb_status_t on_password_changed(sb_pg_conn_t *tx, const sb_event_envelope_t *ev,
                                       sb_buf_t *err)
{
    Sb__Events__MemberPasswordChanged *m =
        sb__events__member_password_changed__unpack(NULL, ev->payload.len, ev->payload.data);
    if (!m)
        return bad_event(ev, "undecodable MemberPasswordChanged payload", err);
    sb_status_t st;
    long long n = 0;
    if (!sb_valid_uuid(m->user_id)) {
        st = bad_event(ev, "MemberPasswordChanged without a user id", err);
        goto out_free;
    }
    if ((st = revoke_user(tx, m->user_id, &n, err)) != SB_OK) {
        sb_warn("member.password_changed %s: cannot revoke refresh tokens: %s", ev->event_id,
                err->buf);
        goto out_free;
    }
    sb_info("password of member %s changed: %lld refresh tokens revoked", m->user_id, n);
out_free:
    sb__events__member_password_changed__free_unpacked(m, NULL);
    return st;
}

sb_status_t auth_on_event(sb_pg_conn_t *tx, const sb_event_envelope_t *ev, void *arg, sb_buf_t *err)
{
    sb_service_t *svc = arg;
    if (!strcmp(ev->type, "member.withdrawn"))
        return on_withdrawn(tx, ev, svc, err);
    if (!strcmp(ev->type, "member.password_changed"))
        return on_password_changed(tx, ev, err);
    sb_debug("event %s %s is not for the auth service: ignored", ev->type, ev->event_id);
    return SB_OK;
}
