/* sb.member events that end sessions: the auth service's event rows (main.c)
 *   member.withdrawn         every refresh token revoked, and the user's
 *                            access tokens denied (sb:deny-user:<id>) for as
 *                            long as an access token can live
 *   member.password_changed  every refresh token revoked
 *
 * The runtime decodes the payload and runs a handler inside the inbox
 * transaction (sb/events.h): a failure rolls back and the event comes again,
 * so every step here is idempotent. An event without a user id is refused
 * (sb_event_refuse): a dead letter, not retried. */
#include "auth.h"
#include "sb/log.h"

static const sb_pg_stmt_t stmt_revoke_user = {
    "auth_refresh_revoke_user",
    "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1::uuid AND revoked_at IS NULL"};

/* Revokes every live refresh token of user_id; *n receives how many. */
static sb_status_t revoke_user(sb_event_ctx_t *ev, const char *user_id, long *n)
{
    sb_status_t st = auth_lock_user(ev->db->conn, user_id, ev->db->detail); /* see tokens.c */
    PGresult *r;
    if (st == SB_OK && (st = sb_db_exec(ev->db, &stmt_revoke_user, &r, user_id)) == SB_OK)
        *n = sb_db_affected(r);
    return st;
}

sb_status_t auth_on_member_withdrawn(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__MemberWithdrawn *m = payload;
    sb_service_t *svc = sb_event_service(ev);
    if (!sb_valid_uuid(m->user_id))
        return sb_event_refuse(ev, "MemberWithdrawn without a user id");
    long n = 0;
    sb_status_t st = revoke_user(ev, m->user_id, &n);
    if (st != SB_OK)
        return st;
    /* Inside the transaction: if Redis is down the event is retried, and
     * nothing was committed. */
    long ttl = auth_config_of(svc)->access_ttl_s;
    sb_buf_t rerr = SB_BUF_INIT;
    redisReply *r = sb_redis_cmd(svc->redis, &rerr, "SET sb:deny-user:%s 1 EX %ld", m->user_id, ttl);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        sb_buf_addf(ev->db->detail, "cannot deny the access tokens of %s: %s", m->user_id,
                    r ? r->str : rerr.buf);
        st = SB_UNAVAILABLE;
    } else {
        sb_info("member %s withdrawn: %ld refresh tokens revoked, access tokens denied for %lds",
                m->user_id, n, ttl);
    }
    if (r)
        freeReplyObject(r);
    sb_buf_release(&rerr);
    return st;
}

sb_status_t auth_on_password_changed(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__MemberPasswordChanged *m = payload;
    if (!sb_valid_uuid(m->user_id))
        return sb_event_refuse(ev, "MemberPasswordChanged without a user id");
    long n = 0;
    sb_status_t st = revoke_user(ev, m->user_id, &n);
    if (st == SB_OK)
        sb_info("password of member %s changed: %ld refresh tokens revoked", m->user_id, n);
    return st;
}
