/* member service: wiring. Accounts and profiles (proto/member.proto): sign-up,
 * profile read/edit, withdrawal, and the credentials check the auth service
 * uses for login. Handlers in member.c; see member.h for the file map.
 *
 * Configuration beyond the common one (README "Configuration"):
 *   BOOTSTRAP_ADMIN_LOGIN / BOOTSTRAP_ADMIN_PASSWORD  the admin ensured at start-up (bootstrap.c)
 *   PWHASH_OPSLIMIT / PWHASH_MEMLIMIT / PWHASH_CONCURRENCY  password hashing (password.c) */
#include <stdlib.h>

#include "member.h"
#include "sb/alloc.h"
#include "sb/log.h"
#include "sb/service.h"

SB_SERVICE_MIGRATIONS(member);

/* Signup, GetMember and CheckCredentials are one statement each (plus a
 * best-effort rehash); UpdateMember and DeleteMember write the outbox with
 * the change. */
static const sb_rpc_method_t methods[] = {
    {"Signup", member_signup},
    {"GetMember", member_get},
    {"UpdateMember", member_update, .tx = SB_TX},
    {"DeleteMember", member_delete, .tx = SB_TX},
    {"CheckCredentials", member_check_credentials},
};

static sb_status_t member_init(sb_service_t *svc, sb_buf_t *err)
{
    if (sodium_init() < 0) {
        sb_buf_adds(err, "libsodium could not be initialised");
        return SB_INTERNAL;
    }
    member_state_t *state = sb_calloc(1, sizeof *state);
    sb_status_t st = SB_INTERNAL;
    state->pw = pw_hasher_new(err);
    if (!state->pw)
        goto out_free;
    if ((st = member_bootstrap_admin(svc->pg, state->pw, err)) != SB_OK)
        goto out_hasher;
    svc->user = state;
    return SB_OK;

out_hasher:
    pw_hasher_free(state->pw);
out_free:
    free(state);
    return st;
}

static void member_fini(sb_service_t *svc)
{
    member_state_t *state = svc->user;
    if (!state)
        return;
    pw_hasher_free(state->pw);
    free(state);
    svc->user = NULL;
}

static const sb_service_def_t def = {
    .name = "member",
    .descriptor = &sb__member__member_service__descriptor,
    SB_METHODS(methods),
    .migrations = &sb_member_migrations,
    .init = member_init,
    .fini = member_fini,
};

int main(void)
{
    /* A bad bootstrap setting stops the process before any server is touched. */
    sb_log_init(def.name);
    sb_buf_t err = SB_BUF_INIT;
    if (member_bootstrap_check(&err) != SB_OK) {
        sb_error("member service refuses to start: %s", err.buf);
        sb_buf_release(&err);
        return 1;
    }
    sb_buf_release(&err);
    return sb_service_main(&def);
}
