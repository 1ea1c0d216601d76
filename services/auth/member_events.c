/* sb.member events that end sessions: the auth service's event rows (main.c)
 *   member.withdrawn         every refresh token revoked, and every access
 *                            token of the user (a revocation "all tokens of
 *                            the user", sb:deny-user:<id> = "all")
 *   member.password_changed  every refresh token revoked, and the access
 *                            tokens issued before the change (changed_at;
 *                            sb:deny-user:<id> = its unix ms): a login with
 *                            the new password right after stays valid
 * Both revocations last as long as an access token can live
 * (ACCESS_TOKEN_TTL_S) and are written with their Redis entry in the event's
 * transaction (revocations.c).
 *
 * Known window: changed_at is the member transaction's start; a token issued
 * between it and that commit (a refresh, or a login with the old password, in
 * those milliseconds) is not refused, nor one issued by a refresh between the
 * change and this handler (its refresh token is revoked here, the access
 * token lives out its ACCESS_TOKEN_TTL_S). The clocks of the member and auth
 * hosts are assumed in step (NTP).
 *
 * The runtime decodes the payload and runs a handler inside the inbox
 * transaction (sb/events.h): a failure rolls back and the event comes again,
 * so every step here is idempotent. An event without a user id is refused
 * (sb_event_refuse): a dead letter, not retried. */
#include "auth.h"
#include "sb/log.h"
#include "sb/util.h"

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
    /* The revocation and its Redis entry in this transaction: if Redis is
     * down the event is retried, and nothing was committed. */
    long ttl = auth_config_of(svc)->access_ttl_s;
    if ((st = auth_revoke_user(ev->db, svc->redis, m->user_id, NULL, "withdrawal", ttl)) != SB_OK)
        return st;
    sb_info("member %s withdrawn: %ld refresh tokens revoked, every access token revoked for %lds",
            m->user_id, n, ttl);
    return SB_OK;
}

sb_status_t auth_on_password_changed(sb_event_ctx_t *ev, const void *payload)
{
    const Sb__Events__MemberPasswordChanged *m = payload;
    if (!sb_valid_uuid(m->user_id))
        return sb_event_refuse(ev, "MemberPasswordChanged without a user id");
    long n = 0;
    sb_status_t st = revoke_user(ev, m->user_id, &n);
    if (st != SB_OK)
        return st;
    /* the cutoff: the change, never later than now (a bad clock or event must
     * not refuse the logins that follow) */
    sb_service_t *svc = sb_event_service(ev);
    long ttl = auth_config_of(svc)->access_ttl_s;
    int64_t now = sb_now_ms(), at = 0;
    if (!m->changed_at || !sb_parse_rfc3339(m->changed_at, &at) || at > now) {
        sb_warn("member.password_changed of %s: changed_at \"%s\" unusable, revoking the tokens "
                "issued before now",
                m->user_id, m->changed_at ? m->changed_at : "");
        at = now;
    }
    if (at + ttl * 1000 <= now) {
        sb_info("password of member %s changed: %ld refresh tokens revoked; the access tokens issued "
                "before the change (%s) have all expired",
                m->user_id, n, m->changed_at);
        return SB_OK;
    }
    char before[32];
    sb_time_rfc3339(at, before);
    if ((st = auth_revoke_user(ev->db, svc->redis, m->user_id, before, "password_change", ttl)) != SB_OK)
        return st;
    sb_info("password of member %s changed: %ld refresh tokens revoked, access tokens issued before %s "
            "revoked",
            m->user_id, n, before);
    return SB_OK;
}
