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

/* A bad bootstrap setting stops the process before any server is touched. */
SB_SERVICE_MAIN(member, SB_METHODS(methods), .check = member_bootstrap_check, .init = member_init,
                .fini = member_fini);
