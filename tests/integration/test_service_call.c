/* The RPC runner (sb_service_call) against the real PostgreSQL, through a
 * gRPC server and client in one process: a transaction row commits, rolls
 * back on a refusal, runs again after serialization failures; an internal
 * failure reaches the client as a plain message; idempotency keys give one
 * effect and one answer per key (and per caller: the user of the access
 * token), 409 for another body, even for 8 twins at once; a handler that
 * commits early (a payment before its provider call): twins told "in
 * progress", refusals stored, retryable ones freeing the key. The server runs as
 * every service does: mutual TLS with the tests' PKI and the token check
 * (sb_test_pki.h). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger.pb-c.h"
#include "sb/db.h"
#include "sb/log.h"
#include "sb/service.h"
#include "sb_test_env.h"
#include "sb_test_pki.h"

#define DB "sb_test_service_call"

static sb_pg_pool_t *pool;
static sb_service_t svc;
static sb_server_t *srv;
static sb_channel_t *ch;
static atomic_int increments_run, unavailable_once, unavailable_once_2p;

static const sb_migration_t tables[] = {
    {1, "ledger",
     "CREATE TABLE deposits (deposit_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
     " account text NOT NULL, amount bigint NOT NULL);"
     "CREATE TABLE counters (name text PRIMARY KEY, value bigint NOT NULL);"},
};

static const sb_pg_stmt_t insert_deposit = {
    "t_deposit_insert",
    "INSERT INTO deposits (account, amount) VALUES ($1, $2::bigint) RETURNING deposit_id::text"};
static const sb_pg_stmt_t balance = {
    "t_balance", "SELECT coalesce(sum(amount), 0)::text FROM deposits WHERE account = $1"};
static const sb_pg_stmt_t counter_get = {"t_counter_get", "SELECT value FROM counters WHERE name = $1"};
static const sb_pg_stmt_t counter_set = {"t_counter_set",
                                         "INSERT INTO counters VALUES ($1, $2::bigint) ON CONFLICT "
                                         "(name) DO UPDATE SET value = EXCLUDED.value"};
static const sb_pg_stmt_t broken = {"t_broken", "SELECT * FROM no_such_table"};

static sb_status_t deposit(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Test__DepositRequest *req = in;
    Sb__Test__DepositReply *resp = out;
    char amount[32];
    snprintf(amount, sizeof amount, "%lld", (long long)req->amount);
    PGresult *r;
    sb_status_t st = sb_db_exec(ctx->db, &insert_deposit, &r, req->account, amount);
    if (st != SB_OK)
        return st;
    resp->deposit_id = sb_arena_strdup(ctx->arena, PQgetvalue(r, 0, 0));
    if (req->amount <= 0)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "amount must be positive");
    if (req->amount == 13 && atomic_fetch_add(&unavailable_once, 1) == 0)
        return sb_rpc_fail(ctx, SB_UNAVAILABLE, "unlucky; try again");
    if (req->sleep_ms > 0)
        usleep((useconds_t)req->sleep_ms * 1000);
    if ((st = sb_db_exec(ctx->db, &balance, &r, req->account)) != SB_OK)
        return st;
    resp->balance = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    return SB_OK;
}

/* Commits its insert before the slow part (what CreatePayment does around
 * the provider call), then refuses or answers as deposit does. */
static sb_status_t deposit_two_phase(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Test__DepositRequest *req = in;
    Sb__Test__DepositReply *resp = out;
    char amount[32];
    snprintf(amount, sizeof amount, "%lld", (long long)req->amount);
    PGresult *r;
    sb_status_t st = sb_db_exec(ctx->db, &insert_deposit, &r, req->account, amount);
    if (st != SB_OK)
        return st;
    resp->deposit_id = sb_arena_strdup(ctx->arena, PQgetvalue(r, 0, 0));
    if ((st = sb_db_commit(ctx->db)) != SB_OK)
        return st;
    if (req->sleep_ms > 0)
        usleep((useconds_t)req->sleep_ms * 1000);
    if (req->amount <= 0)
        return sb_rpc_fail(ctx, SB_INVALID_ARGUMENT, "amount must be positive");
    if (req->amount == 13 && atomic_fetch_add(&unavailable_once_2p, 1) == 0)
        return sb_rpc_fail(ctx, SB_UNAVAILABLE, "unlucky; try again");
    if ((st = sb_db_exec(ctx->db, &balance, &r, req->account)) != SB_OK)
        return st;
    resp->balance = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    return SB_OK;
}

static sb_status_t increment(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Test__CounterRequest *req = in;
    Sb__Test__CounterReply *resp = out;
    atomic_fetch_add(&increments_run, 1);
    PGresult *r;
    sb_status_t st = sb_db_exec(ctx->db, &counter_get, &r, req->name);
    if (st != SB_OK)
        return st;
    resp->value = (PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0) + 1;
    usleep(3000); /* widen the window: concurrent increments conflict */
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)resp->value);
    return sb_db_exec(ctx->db, &counter_set, NULL, req->name, v);
}

static sb_status_t broken_sql(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    (void)in;
    (void)out;
    return sb_db_exec(ctx->db, &broken, NULL);
}

static sb_status_t create_then_refuse(sb_rpc_ctx_t *ctx, const void *in, void *out)
{
    const Sb__Test__CounterRequest *req = in;
    (void)out;
    sb_status_t st = sb_db_exec(ctx->db, &counter_set, NULL, req->name, "1");
    if (st != SB_OK)
        return st;
    return sb_rpc_fail(ctx, SB_FAILED_PRECONDITION, "changed my mind");
}

static const sb_rpc_method_t methods[] = {
    {"Deposit", deposit, .tx = SB_TX, .idempotent = true},
    {"DepositTwoPhase", deposit_two_phase, .tx = SB_TX, .idempotent = true},
    {"DepositPlain", deposit},
    {"Increment", increment, .tx = SB_TX, .iso = SB_PG_SERIALIZABLE},
    {"Broken", broken_sql, .tx = SB_TX},
    {"CreateThenRefuse", create_then_refuse, .tx = SB_TX},
    {"ReadOnlyWrite", create_then_refuse, .tx = SB_TX_READ},
};

static void setup(void)
{
    sb_log_init("test-service-call");
    sb_log_set_level(SB_LOG_ERROR);
    cr_assert_eq(test_fresh_db(DB), 0, "cannot create database " DB " at %s", test_db_url());
    sb_buf_t err = SB_BUF_INIT;
    pool = sb_pg_pool_new(test_db_url(), DB, 12, &err);
    cr_assert_not_null(pool, "%s", err.buf);
    cr_assert_eq(sb_idempotency_migrate(pool, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(sb_pg_migrate(pool, "test", tables, 1, &err), SB_OK, "%s", err.buf);
    svc = (sb_service_t){.pg = pool};
    srv = sb_server_new("127.0.0.1:0", 10);
    sb_server_add_service_run(srv, &sb__test__ledger_service__descriptor, methods,
                              sizeof methods / sizeof methods[0], &svc, sb_service_call);
    sb_test_server_authn(srv);
    cr_assert_eq(sb_server_start(srv, &err), SB_OK, "%s", err.buf);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", sb_server_port(srv));
    ch = sb_channel_get(target);
    sb_buf_release(&err);
}

static void teardown(void)
{
    sb_channels_free_all();
    sb_server_shutdown(srv, 1000);
    sb_server_free(srv);
    sb_test_authn_free();
    sb_pg_pool_free(pool);
}

TestSuite(service_call, .init = setup, .fini = teardown, .timeout = 120);

/* One text value of a query on the test database (caller frees). */
static char *scalar(const char *sql)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_pg_conn_t *c = sb_pg_acquire(pool, 2000, &err);
    cr_assert_not_null(c, "%s", err.buf);
    PGresult *r = sb_pg_exec_sql(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
    char *v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    sb_pg_release(pool, c);
    sb_buf_release(&err);
    return v;
}

static long long count(const char *fmt, const char *arg)
{
    char sql[512];
    snprintf(sql, sizeof sql, fmt, arg);
    char *v = scalar(sql);
    long long n = strtoll(v, NULL, 10);
    free(v);
    return n;
}

static void exec_sql(const char *sql)
{
    free(scalar(sql));
}

typedef struct call {
    const char *method;
    const char *user;
    const char *account;
    int64_t amount;
    int sleep_ms;
    const char *key;
    /* out */
    sb_status_t st;
    char deposit_id[64];
    int64_t balance;
    char msg[256];
} call_t;

static void *run_deposit(void *arg)
{
    call_t *c = arg;
    sb_arena_t *a = sb_arena_new();
    sb_buf_t err = SB_BUF_INIT;
    Sb__Test__DepositRequest req = SB__TEST__DEPOSIT_REQUEST__INIT;
    req.account = (char *)c->account;
    req.amount = c->amount;
    req.sleep_ms = c->sleep_ms;
    req.idempotency_key = (char *)(c->key ? c->key : "");
    sb_call_opts_t o = {.timeout_ms = 20000,
                        .token = sb_test_token(a, c->user ? c->user : "u-1", "USER")};
    Sb__Test__DepositReply *resp = NULL;
    c->st = sb_rpc_call(ch, &sb__test__ledger_service__descriptor, c->method ? c->method : "Deposit",
                        &req.base, a, (ProtobufCMessage **)&resp, &o, &err);
    snprintf(c->msg, sizeof c->msg, "%s", err.buf);
    if (c->st == SB_OK) {
        snprintf(c->deposit_id, sizeof c->deposit_id, "%s", resp->deposit_id);
        c->balance = resp->balance;
    }
    sb_buf_release(&err);
    sb_arena_free(a);
    return NULL;
}

static sb_status_t counter_call(const char *method, const char *name, int64_t *value, sb_buf_t *err)
{
    sb_arena_t *a = sb_arena_new();
    Sb__Test__CounterRequest req = SB__TEST__COUNTER_REQUEST__INIT;
    req.name = (char *)name;
    Sb__Test__CounterReply *resp = NULL;
    sb_call_opts_t o = {.timeout_ms = 20000};
    sb_status_t st = sb_rpc_call(ch, &sb__test__ledger_service__descriptor, method, &req.base, a,
                                 (ProtobufCMessage **)&resp, &o, err);
    if (st == SB_OK && value)
        *value = resp->value;
    sb_arena_free(a);
    return st;
}

#define DEPOSITS_OF(acct) count("SELECT count(*) FROM deposits WHERE account = '%s'", acct)

Test(service_call, same_key_and_body_twice_is_one_effect_and_the_same_answer)
{
    call_t c1 = {.account = "a-twice", .amount = 100, .key = "k-twice"}, c2 = c1;
    run_deposit(&c1);
    cr_assert_eq(c1.st, SB_OK, "%s", c1.msg);
    run_deposit(&c2);
    cr_assert_eq(c2.st, SB_OK, "%s", c2.msg);
    cr_assert_str_eq(c2.deposit_id, c1.deposit_id, "the stored answer is replayed");
    cr_assert_eq(c2.balance, 100);
    cr_assert_eq(DEPOSITS_OF("a-twice"), 1, "one effect");

    /* another caller's key of the same name is its own */
    call_t c3 = c1;
    c3.user = "u-2";
    run_deposit(&c3);
    cr_assert_eq(c3.st, SB_OK, "%s", c3.msg);
    cr_assert_str_neq(c3.deposit_id, c1.deposit_id);
    cr_assert_eq(DEPOSITS_OF("a-twice"), 2);
}

Test(service_call, same_key_other_body_is_refused_with_409)
{
    call_t c1 = {.account = "a-other", .amount = 100, .key = "k-other"}, c2 = c1;
    run_deposit(&c1);
    cr_assert_eq(c1.st, SB_OK, "%s", c1.msg);
    c2.amount = 200;
    run_deposit(&c2);
    cr_assert_eq(c2.st, SB_ALREADY_EXISTS, "%s: %s", sb_status_name(c2.st), c2.msg);
    cr_assert_eq(sb_status_http(c2.st), 409);
    cr_assert_str_eq(c2.msg, "Idempotency-Key reused with a different request");
    cr_assert_eq(DEPOSITS_OF("a-other"), 1);
}

Test(service_call, eight_concurrent_twins_are_one_effect)
{
    enum { N = 8 };
    call_t c[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        c[i] = (call_t){.account = "a-twins", .amount = 7, .sleep_ms = 200, .key = "k-twins"};
        pthread_create(&t[i], NULL, run_deposit, &c[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(c[i].st, SB_OK, "twin %d: %s %s", i, sb_status_name(c[i].st), c[i].msg);
        cr_assert_str_eq(c[i].deposit_id, c[0].deposit_id, "twin %d got another answer", i);
        cr_assert_eq(c[i].balance, 7);
    }
    cr_assert_eq(DEPOSITS_OF("a-twins"), 1, "one effect");
}

Test(service_call, refusals_are_stored_without_their_effects)
{
    call_t c1 = {.account = "a-refused", .amount = -5, .key = "k-refused"}, c2 = c1;
    run_deposit(&c1);
    cr_assert_eq(c1.st, SB_INVALID_ARGUMENT, "%s", c1.msg);
    cr_assert_str_eq(c1.msg, "amount must be positive");
    cr_assert_eq(DEPOSITS_OF("a-refused"), 0, "the refused call's insert was undone");
    cr_assert_eq(
        count("SELECT count(*) FROM sb_idempotency WHERE key = '%s' AND status = 3", "k-refused"), 1,
        "the refusal is stored");
    run_deposit(&c2);
    cr_assert_eq(c2.st, SB_INVALID_ARGUMENT, "%s", c2.msg);
    cr_assert_str_eq(c2.msg, "amount must be positive");
}

Test(service_call, retryable_refusals_leave_the_key_free)
{
    call_t c1 = {.account = "a-retry", .amount = 13, .key = "k-retry"}, c2 = c1;
    run_deposit(&c1);
    cr_assert_eq(c1.st, SB_UNAVAILABLE, "%s", c1.msg);
    cr_assert_eq(DEPOSITS_OF("a-retry"), 0);
    cr_assert_eq(count("SELECT count(*) FROM sb_idempotency WHERE key = '%s'", "k-retry"), 0);
    run_deposit(&c2);
    cr_assert_eq(c2.st, SB_OK, "%s", c2.msg);
    cr_assert_eq(DEPOSITS_OF("a-retry"), 1);
}

Test(service_call, no_key_runs_every_time_and_expired_keys_are_ignored)
{
    call_t c = {.account = "a-nokey", .amount = 1};
    run_deposit(&c);
    run_deposit(&c);
    cr_assert_eq(c.st, SB_OK, "%s", c.msg);
    cr_assert_eq(DEPOSITS_OF("a-nokey"), 2);
    call_t p = {.method = "DepositPlain", .account = "a-nokey", .amount = 1, .key = "ignored"};
    run_deposit(&p);
    run_deposit(&p);
    cr_assert_eq(p.st, SB_OK, "%s", p.msg);
    cr_assert_eq(DEPOSITS_OF("a-nokey"), 4, "a row that is not idempotent ignores the key");

    call_t e1 = {.account = "a-expired", .amount = 1, .key = "k-expired"}, e2 = e1;
    run_deposit(&e1);
    cr_assert_eq(e1.st, SB_OK, "%s", e1.msg);
    exec_sql("UPDATE sb_idempotency SET created_at = now() - interval '25 hours' WHERE key = 'k-expired'"
             " RETURNING 1");
    e2.amount = 2; /* another body: would be 409 within 24 h */
    run_deposit(&e2);
    cr_assert_eq(e2.st, SB_OK, "%s", e2.msg);
    cr_assert_str_neq(e2.deposit_id, e1.deposit_id);
    cr_assert_eq(DEPOSITS_OF("a-expired"), 2);
}

typedef struct inc_arg {
    int n;
    int failures;
} inc_arg_t;

static void *run_increments(void *arg)
{
    inc_arg_t *a = arg;
    for (int i = 0; i < a->n; i++) {
        sb_buf_t err = SB_BUF_INIT;
        if (counter_call("Increment", "hits", NULL, &err) != SB_OK) {
            a->failures++;
            fprintf(stderr, "increment failed: %s\n", err.buf);
        }
        sb_buf_release(&err);
    }
    return NULL;
}

Test(service_call, serialization_failures_are_run_again)
{
    enum { T = 6, N = 5 };
    inc_arg_t args[T];
    pthread_t t[T];
    atomic_store(&increments_run, 0);
    for (int i = 0; i < T; i++) {
        args[i] = (inc_arg_t){.n = N};
        pthread_create(&t[i], NULL, run_increments, &args[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(args[i].failures, 0);
    }
    cr_assert_eq(count("SELECT value FROM counters WHERE name = '%s'", "hits"), T * N,
                 "no increment lost");
    cr_assert_gt(atomic_load(&increments_run), T * N, "conflicts were run again (%d runs)",
                 atomic_load(&increments_run));
}

Test(service_call, internal_failures_reach_the_client_without_detail)
{
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(counter_call("Broken", "x", NULL, &err), SB_INTERNAL);
    cr_assert_str_eq(err.buf, "internal error");
    sb_buf_reset(&err);
    /* a write in a READ ONLY transaction is the handler's bug, not the caller's */
    cr_assert_eq(counter_call("ReadOnlyWrite", "ro", NULL, &err), SB_INTERNAL);
    cr_assert_str_eq(err.buf, "internal error");
    cr_assert_eq(count("SELECT count(*) FROM counters WHERE name = '%s'", "ro"), 0);
    sb_buf_release(&err);
}

Test(service_call, a_refusal_rolls_the_transaction_back)
{
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(counter_call("CreateThenRefuse", "refused", NULL, &err), SB_FAILED_PRECONDITION);
    cr_assert_str_eq(err.buf, "changed my mind");
    cr_assert_eq(count("SELECT count(*) FROM counters WHERE name = '%s'", "refused"), 0);
    sb_buf_release(&err);
}

Test(service_call, early_commit_twins_are_told_in_progress)
{
    enum { N = 4 };
    call_t c[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        c[i] = (call_t){
            .method = "DepositTwoPhase", .account = "a-2p", .amount = 5, .sleep_ms = 400, .key = "k-2p"};
        pthread_create(&t[i], NULL, run_deposit, &c[i]);
    }
    int ok = -1;
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < N; i++) {
        if (c[i].st == SB_OK) {
            cr_assert_eq(ok, -1, "two twins ran");
            ok = i;
        } else {
            cr_assert_eq(c[i].st, SB_ABORTED, "twin %d: %s %s", i, sb_status_name(c[i].st), c[i].msg);
            cr_assert(strstr(c[i].msg, "in progress"), "%s", c[i].msg);
            cr_assert_eq(sb_status_http(c[i].st), 409);
        }
    }
    cr_assert_geq(ok, 0, "one twin ran");
    cr_assert_eq(DEPOSITS_OF("a-2p"), 1, "one effect");
    call_t again = c[ok];
    run_deposit(&again);
    cr_assert_eq(again.st, SB_OK, "%s", again.msg);
    cr_assert_str_eq(again.deposit_id, c[ok].deposit_id, "the stored answer is replayed");
    cr_assert_eq(DEPOSITS_OF("a-2p"), 1);
}

Test(service_call, early_commit_refusals_are_stored_retryable_ones_free_the_key)
{
    call_t r1 = {.method = "DepositTwoPhase", .account = "a-2p-refused", .amount = -5, .key = "k-2p-r"},
           r2 = r1;
    run_deposit(&r1);
    cr_assert_eq(r1.st, SB_INVALID_ARGUMENT, "%s", r1.msg);
    cr_assert_str_eq(r1.msg, "amount must be positive");
    cr_assert_eq(DEPOSITS_OF("a-2p-refused"), 1, "what was committed before the refusal stays");
    run_deposit(&r2);
    cr_assert_eq(r2.st, SB_INVALID_ARGUMENT, "%s", r2.msg);
    cr_assert_eq(DEPOSITS_OF("a-2p-refused"), 1, "the stored refusal answers; nothing runs again");

    call_t u1 = {.method = "DepositTwoPhase", .account = "a-2p-retry", .amount = 13, .key = "k-2p-u"},
           u2 = u1;
    run_deposit(&u1);
    cr_assert_eq(u1.st, SB_UNAVAILABLE, "%s", u1.msg);
    cr_assert_eq(count("SELECT count(*) FROM sb_idempotency WHERE key = '%s'", "k-2p-u"), 0,
                 "the key is free again");
    run_deposit(&u2);
    cr_assert_eq(u2.st, SB_OK, "%s", u2.msg);
    cr_assert_eq(DEPOSITS_OF("a-2p-retry"), 2, "the retry ran (the handler makes that safe)");
}

Test(service_call, a_claim_left_unanswered_is_taken_over_by_the_same_request_once_stale)
{
    call_t c1 = {.method = "DepositTwoPhase", .account = "a-2p-stale", .amount = 3, .key = "k-2p-stale"},
           c2 = c1, other = c1, fresh = c1;
    run_deposit(&c1);
    cr_assert_eq(c1.st, SB_OK, "%s", c1.msg);
    /* as if its process had died after the early commit, 10 minutes ago */
    exec_sql("UPDATE sb_idempotency SET status = NULL, response = NULL,"
             " created_at = now() - interval '10 minutes' WHERE key = 'k-2p-stale' RETURNING 1");
    other.amount = 4;
    run_deposit(&other);
    cr_assert_eq(other.st, SB_ALREADY_EXISTS, "another request never takes a claim over: %s", other.msg);
    run_deposit(&c2);
    cr_assert_eq(c2.st, SB_OK, "%s", c2.msg);
    cr_assert_eq(DEPOSITS_OF("a-2p-stale"), 2, "the handler ran again (it must find its first run)");
    cr_assert_eq(
        count("SELECT count(*) FROM sb_idempotency WHERE key = '%s' AND status = 0", "k-2p-stale"), 1,
        "and its answer is stored");
    /* an unanswered claim that is not stale yet is in progress */
    exec_sql(
        "UPDATE sb_idempotency SET status = NULL, response = NULL WHERE key = 'k-2p-stale' RETURNING 1");
    run_deposit(&fresh);
    cr_assert_eq(fresh.st, SB_ABORTED, "%s", fresh.msg);
    cr_assert(strstr(fresh.msg, "in progress"), "%s", fresh.msg);
}
