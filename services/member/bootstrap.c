/* The admin account ensured at start-up (SPEC §6: admins are never created by
 * sign-up). Configuration:
 *   BOOTSTRAP_ADMIN_LOGIN     login id of the admin (sign-up rules: 4-32 of [A-Za-z0-9._-])
 *   BOOTSTRAP_ADMIN_PASSWORD  its password (8-128 bytes)
 * Both or neither. When the login id exists as an admin nothing changes (its
 * password is never overwritten, so a changed password survives restarts);
 * when it belongs to a USER or PLANNER the service refuses to start rather
 * than hand admin rights to whoever signed up with that id. */
#include <stdio.h>
#include <string.h>

#include "member.h"
#include "sb/db.h"
#include "sb/config.h"
#include "sb/log.h"
#include "sb/util.h"

#define BOOTSTRAP_WAIT_MS 60000

static const sb_pg_stmt_t select_role = {"member_bootstrap_role",
                                         "SELECT role FROM members WHERE login_id = $1"};
static const sb_pg_stmt_t insert_admin = {
    "member_bootstrap_insert",
    "INSERT INTO members (user_id, login_id, password_hash, name, email, phone, role)"
    " VALUES (gen_random_uuid(), $1, $2, 'Administrator', '', '', 'ADMIN')"
    " ON CONFLICT (login_id) DO NOTHING RETURNING user_id::text"};

sb_status_t member_bootstrap_check(sb_buf_t *err)
{
    const char *login = sb_cfg_str("BOOTSTRAP_ADMIN_LOGIN", "");
    const char *password = sb_cfg_str("BOOTSTRAP_ADMIN_PASSWORD", "");
    const char *problem;
    if (!*login && !*password)
        return SB_OK;
    if (!*login || !*password) {
        sb_buf_adds(err, "BOOTSTRAP_ADMIN_LOGIN and BOOTSTRAP_ADMIN_PASSWORD must be set together");
        return SB_INVALID_ARGUMENT;
    }
    if ((problem = member_login_id_problem(login))) {
        sb_buf_addf(err, "BOOTSTRAP_ADMIN_LOGIN %s", problem);
        return SB_INVALID_ARGUMENT;
    }
    if ((problem = member_password_problem(password))) {
        sb_buf_addf(err, "BOOTSTRAP_ADMIN_PASSWORD %s", problem);
        return SB_INVALID_ARGUMENT;
    }
    return SB_OK;
}

/* The role of login_id's account into *role (in db's arena), "" when there is none. */
static sb_status_t role_of(sb_db_t *db, const char *login, const char **role)
{
    PGresult *r;
    sb_status_t st = sb_db_exec(db, &select_role, &r, login);
    if (st == SB_OK)
        *role = PQntuples(r) ? PQgetvalue(r, 0, 0) : "";
    return st;
}

static sb_status_t existing(const char *login, const char *role, const char *how, sb_buf_t *err)
{
    if (strcmp(role, "ADMIN") == 0) {
        sb_info("bootstrap admin '%s' %s; its password is left unchanged", login, how);
        return SB_OK;
    }
    if (!*role) { /* inserted by another instance and gone again: very unlikely */
        sb_buf_addf(err, "bootstrap admin '%s' could not be ensured (changed concurrently); restart",
                    login);
        return SB_ABORTED;
    }
    sb_buf_addf(err,
                "BOOTSTRAP_ADMIN_LOGIN '%s' belongs to a %s account, not an admin;"
                " choose another login id",
                login, role);
    return SB_FAILED_PRECONDITION;
}

sb_status_t member_bootstrap_admin(sb_pg_pool_t *pool, pw_hasher_t *pw, sb_buf_t *err)
{
    sb_status_t st = member_bootstrap_check(err);
    if (st != SB_OK)
        return st;
    const char *login_raw = sb_cfg_str("BOOTSTRAP_ADMIN_LOGIN", "");
    const char *password = sb_cfg_str("BOOTSTRAP_ADMIN_PASSWORD", "");
    if (!*login_raw) {
        sb_info("BOOTSTRAP_ADMIN_LOGIN/BOOTSTRAP_ADMIN_PASSWORD not set: no admin account ensured");
        return SB_OK;
    }
    char login[64];
    const char *role;
    snprintf(login, sizeof login, "%s", login_raw);
    for (char *p = login; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');

    /* Statements on their own: look first (an existing admin costs no
     * hashing), hash without holding a connection, then insert; a concurrent
     * instance inserting the same login id makes ours a no-op. */
    sb_arena_t *arena = sb_arena_new();
    sb_db_t db = {
        .pool = pool, .arena = arena, .detail = err, .deadline_ms = sb_now_ms() + BOOTSTRAP_WAIT_MS};
    char hash[PW_HASH_MAX] = "";
    PGresult *r;
    if ((st = role_of(&db, login, &role)) != SB_OK)
        goto out;
    if (*role) {
        st = existing(login, role, "already exists", err);
        goto out;
    }
    if ((st = pw_hash(pw, password, hash, sb_now_ms() + BOOTSTRAP_WAIT_MS, err)) != SB_OK ||
        (st = sb_db_exec(&db, &insert_admin, &r, login, hash)) != SB_OK)
        goto out;
    if (PQntuples(r) == 1)
        sb_info("bootstrap admin '%s' created (user id %s)", login, PQgetvalue(r, 0, 0));
    else if ((st = role_of(&db, login, &role)) == SB_OK)
        st = existing(login, role, "was created by another instance", err);
out:
    sodium_memzero(hash, sizeof hash);
    sb_arena_free(arena);
    return st;
}
