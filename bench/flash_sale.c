/* Flash-sale benchmark (issue 10): B buyers, each with their own access
 * token, try to hold seats of one schedule of S seats at the same instant, C
 * requests in flight at a time, and the database is asked afterwards what
 * was held. Not a test: it measures; the runner is bench/flash_sale.py
 * (`make bench-flash`), the figures are in docs/benchmarks.md.
 *
 *   bench-flash-sale --schedule ID --seats S [--grade R] [--buyers 10000]
 *       [--conns 64] [--mode seats|best] [--quantity 2]
 *       (--gateway http://127.0.0.1:18080 | --grpc 127.0.0.1:22054)
 *       [--db "<conninfo of the reservation database>"] [--users FILE]
 *       [--seed N] [--timeout-ms 60000]
 *
 * Setup, not timed: B access tokens are signed with the platform's signing
 * key (JWT_SIGNING_KEY_FILE: the bench stands in for the auth service, as
 * the tests do), one per buyer, for the user ids of --users (one per line;
 * the members the runner created) or for fresh random ids, and each buyer's
 * seats are drawn; then the C connections are opened (REST: C keep-alive
 * connections, each warmed with GET /healthz; gRPC: C threads sharing the
 * process's one TLS channel to the reservation service, as the gateway
 * does, each warmed with a health check).
 *
 * Load, timed: all C slots are released at one instant; each slot sends the
 * next buyer's hold as soon as its previous answer is in, until every buyer
 * has made exactly one attempt (no retries). A buyer's latency is from its
 * request leaving to its answer. attempts/s = B / (time from the release to
 * the last answer).
 *
 *   --mode seats  chosen seats: the grade's seats (seat_index order, rows of
 *                 20 as the inventory numbers them, 0001_inventory.sql) are
 *                 cut into blocks of q neighbours; a buyer picks a block at
 *                 random and asks for exactly those seat ids. With B*q > S
 *                 nearly every block is wanted by several buyers: the first
 *                 to commit wins it, the others must be refused.
 *   --mode best   best available: {grade, quantity q}.
 *
 * Answers: a hold (REST 201 / gRPC OK) with its seat ids; a refusal, the
 * seats being taken or too few left (the error code ALREADY_EXISTS or
 * FAILED_PRECONDITION, whatever HTTP status the gateway maps it to); anything
 * else is an error, counted by code and shown once.
 *
 * Checks afterwards (--db, the reservation service's own database):
 *   held           seats of the schedule not AVAILABLE
 *   held twice     a seat some active reservation claims together with
 *                  another one, or whose row names a different reservation
 *                  (SQL below), plus, from the answers alone, a seat id
 *                  granted to two buyers
 *   expected       what must be held: chosen seats q x the blocks some buyer
 *                  asked for; best available min(S - S mod q, B x q)
 *   outbox drain   time from the last answer until the service's sb_outbox
 *                  has no row with published_at IS NULL
 * Exit status 1 when a seat is held twice, the answers and the database
 * disagree, held != expected, or any attempt failed otherwise (an error);
 * 2 on bad usage or setup. One JSON line on stdout; a summary on stderr. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "reservation.pb-c.h"
#include "sb/jwt.h"
#include "sb/log.h"
#include "sb/rpc.h"
#include "sb/util.h"

#define ROW_LEN 20 /* seats per row, as the inventory generates them */
#define MAX_Q 8    /* the per-reservation limit of the service */
#define TOKEN_TTL_S 3600
#define MAX_CODES 20

typedef enum { MODE_SEATS, MODE_BEST } sale_mode_t;
typedef enum { OUT_HELD, OUT_REFUSED, OUT_ERROR } outcome_t;

typedef struct buyer {
    char user_id[SB_UUID_LEN + 1];
    char *token; /* heap (sb_jwt_issue_es256), freed at the end */
    int block;   /* chosen seats: the block asked for; -1 best available */
    /* the answer */
    outcome_t out;
    int code; /* REST: HTTP status; gRPC: sb_status_t */
    uint32_t lat_us;
    int n_granted;
    int granted[MAX_Q]; /* seat indexes granted (-1: an id this bench cannot parse) */
} buyer_t;

static struct {
    const char *gateway, *grpc, *schedule, *grade, *db, *users;
    int seats, buyers, conns, quantity;
    bool check_only;
    sale_mode_t mode;
    unsigned long seed;
    long timeout_ms;
} cfg = {
    .grade = "R", .buyers = 10000, .conns = 64, .quantity = 2, .mode = MODE_SEATS, .timeout_ms = 60000};

static buyer_t *buyers;
static char error_sample[512];
static pthread_mutex_t sample_mu = PTHREAD_MUTEX_INITIALIZER;

static _Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench-flash-sale: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void note_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_error(const char *fmt, ...)
{
    pthread_mutex_lock(&sample_mu);
    if (!*error_sample) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(error_sample, sizeof error_sample, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&sample_mu);
}

/* ---- seats: index <-> id ("<grade>-<row>-<number>", rows A..Z, AA, ...) ---- */

static void seat_id(int k, char *out, size_t n)
{
    char row[8];
    int r = k / ROW_LEN + 1, len = 0;
    char rev[8];
    while (r > 0 && len < 7) { /* bijective base 26, as inv_row_label */
        r--;
        rev[len++] = (char)('A' + r % 26);
        r /= 26;
    }
    for (int i = 0; i < len; i++)
        row[i] = rev[len - 1 - i];
    row[len] = 0;
    snprintf(out, n, "%s-%s-%d", cfg.grade, row, k % ROW_LEN + 1);
}

/* The seat index of id, or -1 when it is not a seat of cfg.grade in range. */
static int seat_index(const char *id)
{
    size_t gl = strlen(cfg.grade);
    if (strncmp(id, cfg.grade, gl) != 0 || id[gl] != '-')
        return -1;
    const char *p = id + gl + 1;
    long r = 0;
    for (; *p >= 'A' && *p <= 'Z'; p++)
        r = r * 26 + (*p - 'A' + 1);
    if (r < 1 || *p != '-')
        return -1;
    char *end;
    long num = strtol(p + 1, &end, 10);
    if (*end || num < 1 || num > ROW_LEN)
        return -1;
    long k = (r - 1) * ROW_LEN + num - 1;
    return k < cfg.seats ? (int)k : -1;
}

static void record_granted(buyer_t *b, const char *id)
{
    if (b->n_granted < MAX_Q)
        b->granted[b->n_granted++] = seat_index(id);
}

/* The status names a refusal may carry (taken seats, too few left). */
static bool is_refusal(const char *code)
{
    return code && (strcmp(code, "ALREADY_EXISTS") == 0 || strcmp(code, "FAILED_PRECONDITION") == 0);
}

/* ---- setup ---- */

static uint64_t rng_state;
static uint64_t rng(void) /* xorshift64* */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void make_buyers(void)
{
    buyers = calloc((size_t)cfg.buyers, sizeof *buyers);
    if (!buyers)
        die("out of memory");
    FILE *uf = NULL;
    if (cfg.users && !(uf = fopen(cfg.users, "r")))
        die("%s: %m", cfg.users);
    sb_buf_t err = SB_BUF_INIT;
    sb_jwt_signer_t *signer = sb_jwt_signer_from_env(&err);
    if (!signer)
        die("JWT_SIGNING_KEY_FILE: %s", err.buf);
    int blocks = cfg.seats / cfg.quantity;
    int64_t now = sb_now_ms() / 1000;
    for (int i = 0; i < cfg.buyers; i++) {
        buyer_t *b = &buyers[i];
        if (uf) {
            char line[128];
            if (!fgets(line, sizeof line, uf))
                die("%s: %d user ids for %d buyers", cfg.users, i, cfg.buyers);
            line[strcspn(line, "\r\n")] = 0;
            if (strlen(line) != SB_UUID_LEN)
                die("%s: line %d is not a user id", cfg.users, i + 1);
            memcpy(b->user_id, line, sizeof b->user_id);
        } else {
            sb_uuid_v4(b->user_id);
        }
        sb_jwt_claims_t c = {.iat = now, .exp = now + TOKEN_TTL_S};
        snprintf(c.sub, sizeof c.sub, "%s", b->user_id);
        snprintf(c.role, sizeof c.role, "USER");
        sb_uuid_v4(c.jti);
        if (sb_jwt_issue_es256(signer, &c, &b->token, &err) != SB_OK)
            die("signing a token: %s", err.buf);
        b->block = cfg.mode == MODE_SEATS ? (int)(rng() % (uint64_t)blocks) : -1;
    }
    if (uf)
        fclose(uf);
    sb_jwt_signer_free(signer);
    sb_buf_release(&err);
}

/* The JSON body of buyer i's POST /reservations, into b. */
static void rest_body(int i, sb_buf_t *b)
{
    sb_buf_reset(b);
    sb_buf_adds(b, "{\"scheduleId\":");
    sb_buf_add_json_str(b, cfg.schedule, strlen(cfg.schedule));
    if (buyers[i].block >= 0) {
        sb_buf_adds(b, ",\"seatIds\":[");
        for (int s = 0; s < cfg.quantity; s++) {
            char id[64];
            seat_id(buyers[i].block * cfg.quantity + s, id, sizeof id);
            sb_buf_addf(b, "%s\"%s\"", s ? "," : "", id);
        }
        sb_buf_adds(b, "]");
    } else {
        sb_buf_adds(b, ",\"grade\":");
        sb_buf_add_json_str(b, cfg.grade, strlen(cfg.grade));
        sb_buf_addf(b, ",\"quantity\":%d", cfg.quantity);
    }
    sb_buf_addf(b, ",\"attendeeName\":\"Buyer %d\",\"attendeePhone\":\"010-0000-0000\"}", i);
}

/* ---- REST through the gateway: libcurl multi, C keep-alive connections ---- */

typedef struct slot {
    CURL *h;
    struct curl_slist *hdrs;
    sb_buf_t body, resp;
    int buyer;
    int64_t t0;
} slot_t;

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
    sb_buf_add(arg, p, sz * n);
    return sz * n;
}

static void slot_setup(slot_t *s, const char *url)
{
    curl_easy_reset(s->h);
    curl_easy_setopt(s->h, CURLOPT_URL, url);
    curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(s->h, CURLOPT_WRITEDATA, &s->resp);
    curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
    curl_easy_setopt(s->h, CURLOPT_TIMEOUT_MS, cfg.timeout_ms);
    curl_easy_setopt(s->h, CURLOPT_NOSIGNAL, 1L);
    sb_buf_reset(&s->resp);
}

static void slot_start_buyer(CURLM *m, slot_t *s, int i, const char *url)
{
    slot_setup(s, url);
    rest_body(i, &s->body);
    curl_slist_free_all(s->hdrs);
    char auth[SB_JWT_MAX_TOKEN + 32];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", buyers[i].token);
    s->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    s->hdrs = curl_slist_append(s->hdrs, "Expect:");
    s->hdrs = curl_slist_append(s->hdrs, auth);
    curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, s->hdrs);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, s->body.buf);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE, (long)s->body.len);
    s->buyer = i;
    s->t0 = sb_mono_ns();
    curl_multi_add_handle(m, s->h);
}

/* Reads buyer s->buyer's answer from s. */
static void rest_answer(slot_t *s, CURLcode rc)
{
    buyer_t *b = &buyers[s->buyer];
    b->lat_us = (uint32_t)((sb_mono_ns() - s->t0) / 1000);
    long http = 0;
    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &http);
    b->code = (int)http;
    b->out = OUT_ERROR;
    if (rc != CURLE_OK) {
        b->code = -(int)rc;
        note_error("buyer %d: %s", s->buyer, curl_easy_strerror(rc));
        return;
    }
    json_error_t je;
    json_t *j = json_loadb(s->resp.buf, s->resp.len, 0, &je);
    if (http == 201 && j) {
        json_t *ids = json_object_get(j, "seatIds");
        size_t k;
        json_t *v;
        json_array_foreach(ids, k, v)
            record_granted(b, json_string_value(v) ? json_string_value(v) : "");
        b->out = OUT_HELD;
    } else {
        const char *code =
            j ? json_string_value(json_object_get(json_object_get(j, "error"), "code")) : NULL;
        if (is_refusal(code))
            b->out = OUT_REFUSED;
        else
            note_error("buyer %d: HTTP %ld %.*s", s->buyer, http,
                       (int)(s->resp.len > 300 ? 300 : s->resp.len), s->resp.buf);
    }
    json_decref(j);
}

/* Opens and warms the C connections, releases the buyers, and returns the
 * nanoseconds from the release to the last answer. One thread: libcurl's
 * multi interface drives every connection. */
static int64_t run_rest(void)
{
    char url[1024], health[1024];
    snprintf(url, sizeof url, "%s/reservations", cfg.gateway);
    snprintf(health, sizeof health, "%s/healthz", cfg.gateway);
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)cfg.conns);
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)cfg.conns);
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)cfg.conns);
    slot_t *slots = calloc((size_t)cfg.conns, sizeof *slots);
    for (int c = 0; c < cfg.conns; c++) {
        slots[c].h = curl_easy_init();
        sb_buf_init(&slots[c].body);
        sb_buf_init(&slots[c].resp);
    }
    /* warm-up, not timed: every slot opens its connection with GET /healthz */
    for (int c = 0; c < cfg.conns; c++) {
        slot_setup(&slots[c], health);
        curl_multi_add_handle(m, slots[c].h);
    }
    int running = 1, bad = 0;
    while (running) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            long http = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &http);
            if (msg->data.result != CURLE_OK || http != 200)
                bad++;
            curl_multi_remove_handle(m, msg->easy_handle);
        }
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    if (bad)
        die("%d of %d connections failed GET %s", bad, cfg.conns, health);

    /* the release */
    int next = 0, done = 0;
    int64_t t0 = sb_mono_ns();
    for (int c = 0; c < cfg.conns && next < cfg.buyers; c++)
        slot_start_buyer(m, &slots[c], next++, url);
    while (done < cfg.buyers) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            slot_t *s;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            CURLcode rc = msg->data.result;
            curl_multi_remove_handle(m, s->h);
            rest_answer(s, rc);
            done++;
            if (next < cfg.buyers)
                slot_start_buyer(m, s, next++, url);
        }
        if (done < cfg.buyers)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    int64_t elapsed = sb_mono_ns() - t0;
    for (int c = 0; c < cfg.conns; c++) {
        curl_easy_cleanup(slots[c].h);
        curl_slist_free_all(slots[c].hdrs);
        sb_buf_release(&slots[c].body);
        sb_buf_release(&slots[c].resp);
    }
    free(slots);
    curl_multi_cleanup(m);
    return elapsed;
}

/* ---- direct gRPC: C threads, one channel, a bearer token per buyer ---- */

static atomic_int next_buyer;
static pthread_barrier_t release;
static atomic_int warm_failures;

static void grpc_one(sb_channel_t *ch, int i)
{
    buyer_t *b = &buyers[i];
    Sb__Reservation__CreateReservationRequest req = SB__RESERVATION__CREATE_RESERVATION_REQUEST__INIT;
    char ids[MAX_Q][64], *idp[MAX_Q], name[32];
    req.schedule_id = (char *)cfg.schedule;
    if (b->block >= 0) {
        for (int s = 0; s < cfg.quantity; s++) {
            seat_id(b->block * cfg.quantity + s, ids[s], sizeof ids[s]);
            idp[s] = ids[s];
        }
        req.n_seat_ids = (size_t)cfg.quantity;
        req.seat_ids = idp;
    } else {
        req.grade = (char *)cfg.grade;
        req.quantity = cfg.quantity;
    }
    snprintf(name, sizeof name, "Buyer %d", i);
    req.attendee_name = name;
    req.attendee_phone = "010-0000-0000";
    sb_call_opts_t o = {.timeout_ms = cfg.timeout_ms, .token = b->token};
    sb_arena_t *a = sb_arena_new();
    sb_buf_t err = SB_BUF_INIT;
    ProtobufCMessage *resp = NULL;
    int64_t t0 = sb_mono_ns();
    sb_status_t st = sb_rpc_call(ch, &sb__reservation__reservation_service__descriptor,
                                 "CreateReservation", &req.base, a, &resp, &o, &err);
    b->lat_us = (uint32_t)((sb_mono_ns() - t0) / 1000);
    b->code = (int)st;
    if (st == SB_OK) {
        const Sb__Reservation__Reservation *r = (const Sb__Reservation__Reservation *)resp;
        for (size_t k = 0; k < r->n_seat_ids; k++)
            record_granted(b, r->seat_ids[k]);
        b->out = OUT_HELD;
    } else if (is_refusal(sb_status_name(st))) {
        b->out = OUT_REFUSED;
    } else {
        b->out = OUT_ERROR;
        note_error("buyer %d: %s: %s", i, sb_status_name(st), err.buf);
    }
    sb_buf_release(&err);
    sb_arena_free(a);
}

static void *grpc_worker(void *arg)
{
    sb_channel_t *ch = arg;
    /* warm-up, not timed: the channel is connected and this thread has made a call */
    sb_buf_t resp = SB_BUF_INIT, err = SB_BUF_INIT;
    sb_call_opts_t o = {.timeout_ms = 10000};
    if (sb_rpc_call_raw(ch, "/grpc.health.v1.Health/Check", "", 0, &resp, &o, &err) != SB_OK) {
        note_error("health check: %s", err.buf);
        atomic_fetch_add(&warm_failures, 1);
    }
    sb_buf_release(&resp);
    sb_buf_release(&err);
    pthread_barrier_wait(&release);
    for (int i; (i = atomic_fetch_add(&next_buyer, 1)) < cfg.buyers;)
        grpc_one(ch, i);
    return NULL;
}

static int64_t run_grpc(void)
{
    sb_channel_t *ch = sb_channel_get(cfg.grpc);
    if (!ch)
        die("no channel to %s", cfg.grpc);
    pthread_t *t = calloc((size_t)cfg.conns, sizeof *t);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_barrier_init(&release, NULL, (unsigned)cfg.conns + 1);
    for (int c = 0; c < cfg.conns; c++)
        if (pthread_create(&t[c], &attr, grpc_worker, ch) != 0)
            die("pthread_create: thread %d of %d", c, cfg.conns);
    pthread_barrier_wait(&release);
    int64_t t0 = sb_mono_ns();
    if (atomic_load(&warm_failures))
        fprintf(stderr, "bench-flash-sale: %d threads' warm-up call failed: %s\n",
                atomic_load(&warm_failures), error_sample);
    for (int c = 0; c < cfg.conns; c++)
        pthread_join(t[c], NULL);
    int64_t elapsed = sb_mono_ns() - t0;
    pthread_barrier_destroy(&release);
    pthread_attr_destroy(&attr);
    free(t);
    return elapsed;
}

/* ---- the database's word ---- */

/* Seats of the schedule not AVAILABLE (a hold past its deadline is free:
 * resv_seat_status, 0002_booking.sql). */
static const char *const sql_held = "SELECT count(*) FROM seats WHERE schedule_id = $1::uuid"
                                    " AND resv_seat_status(status, held_until) <> 'AVAILABLE'";
/* Seats held twice: a seat id in two live reservations of the schedule, or
 * in one whose seats row does not name it (reservations.seat_ids against
 * seats.reservation_id, both written by the hold's transaction). */
static const char *const sql_twice =
    "WITH live AS (SELECT reservation_id, unnest(seat_ids) AS seat_id FROM reservations"
    "  WHERE schedule_id = $1::uuid"
    "    AND resv_status(status, expires_at) IN ('PENDING_PAYMENT', 'CONFIRMED'))"
    " SELECT (SELECT count(*) FROM (SELECT seat_id FROM live GROUP BY seat_id HAVING count(*) > 1) d)"
    "  + (SELECT count(*) FROM live l LEFT JOIN seats s"
    "       ON s.schedule_id = $1::uuid AND s.seat_id = l.seat_id"
    "     WHERE s.reservation_id IS DISTINCT FROM l.reservation_id)";
static const char *const sql_outbox = "SELECT count(*) FROM sb_outbox WHERE published_at IS NULL";

static long long query_count(PGconn *pg, const char *sql, bool with_schedule)
{
    const char *params[] = {cfg.schedule};
    PGresult *r = PQexecParams(pg, sql, with_schedule ? 1 : 0, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        fprintf(stderr, "bench-flash-sale: %s: %s", sql, PQerrorMessage(pg));
        PQclear(r);
        return -1;
    }
    long long n = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s --schedule ID --seats S [--grade R] [--buyers 10000] [--conns 64]\n"
            "          [--mode seats|best] [--quantity 2] (--gateway URL | --grpc HOST:PORT)\n"
            "          [--db CONNINFO] [--users FILE] [--seed N] [--timeout-ms 60000]\n"
            "       %s --check --schedule ID --db CONNINFO   (the database checks alone)\n",
            argv0, argv0);
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        {"gateway", 1, 0, 'g'},    {"grpc", 1, 0, 'r'},   {"schedule", 1, 0, 's'},
        {"grade", 1, 0, 'G'},      {"db", 1, 0, 'd'},     {"users", 1, 0, 'u'},
        {"seats", 1, 0, 'S'},      {"buyers", 1, 0, 'B'}, {"conns", 1, 0, 'C'},
        {"quantity", 1, 0, 'q'},   {"mode", 1, 0, 'm'},   {"seed", 1, 0, 'x'},
        {"timeout-ms", 1, 0, 't'}, {"check", 0, 0, 'k'},  {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'g': cfg.gateway = optarg; break;
        case 'r': cfg.grpc = optarg; break;
        case 's': cfg.schedule = optarg; break;
        case 'G': cfg.grade = optarg; break;
        case 'd': cfg.db = optarg; break;
        case 'u': cfg.users = optarg; break;
        case 'S': cfg.seats = atoi(optarg); break;
        case 'B': cfg.buyers = atoi(optarg); break;
        case 'C': cfg.conns = atoi(optarg); break;
        case 'q': cfg.quantity = atoi(optarg); break;
        case 'x': cfg.seed = strtoul(optarg, NULL, 10); break;
        case 't': cfg.timeout_ms = atol(optarg); break;
        case 'k': cfg.check_only = true; break;
        case 'm':
            if (strcmp(optarg, "seats") == 0)
                cfg.mode = MODE_SEATS;
            else if (strcmp(optarg, "best") == 0)
                cfg.mode = MODE_BEST;
            else
                usage(argv[0]);
            break;
        default: usage(argv[0]);
        }
    }
    if (cfg.check_only && cfg.schedule && cfg.db)
        return;
    if (!cfg.schedule || cfg.seats < 1 || cfg.buyers < 1 || cfg.conns < 1 || cfg.conns > 4096 ||
        cfg.quantity < 1 || cfg.quantity > MAX_Q || cfg.seats < cfg.quantity ||
        !cfg.gateway == !cfg.grpc || cfg.timeout_ms < 100)
        usage(argv[0]);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    sb_log_init("bench-flash-sale");
    sb_log_set_level(SB_LOG_ERROR);
    rng_state = cfg.seed ? cfg.seed : (uint64_t)sb_now_ms() | 1;
    PGconn *pg = NULL;
    if (cfg.db) {
        pg = PQconnectdb(cfg.db);
        if (PQstatus(pg) != CONNECTION_OK)
            die("--db: %s", PQerrorMessage(pg));
    }
    if (cfg.check_only) { /* after another load (pgbench): what the database holds */
        long long held = query_count(pg, sql_held, true), twice = query_count(pg, sql_twice, true);
        printf("{\"seats_held_db\":%lld,\"held_twice_db\":%lld}\n", held, twice);
        PQfinish(pg);
        return held >= 0 && twice == 0 ? 0 : 1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        die("curl_global_init failed");

    int64_t t_setup = sb_mono_ns();
    make_buyers();
    fprintf(stderr, "bench-flash-sale: %d tokens signed in %.1f s; releasing %d buyers on %d %s\n",
            cfg.buyers, (double)(sb_mono_ns() - t_setup) / 1e9, cfg.buyers, cfg.conns,
            cfg.gateway ? "connections (REST via the gateway)" : "threads (direct gRPC)");

    int64_t elapsed = cfg.gateway ? run_rest() : run_grpc();
    int64_t t_end = sb_mono_ns();

    /* the answers */
    long held_n = 0, refused = 0, errors = 0, granted = 0, twice_client = 0, unparsed = 0;
    int codes[MAX_CODES][2] = {{0}};
    int n_codes = 0;
    uint32_t *lat = malloc(sizeof(uint32_t) * (size_t)cfg.buyers);
    unsigned char *owner = calloc((size_t)cfg.seats, 1);
    unsigned char *wanted = calloc((size_t)(cfg.seats / cfg.quantity + 1), 1);
    long blocks_wanted = 0;
    for (int i = 0; i < cfg.buyers; i++) {
        buyer_t *b = &buyers[i];
        lat[i] = b->lat_us;
        if (b->block >= 0 && !wanted[b->block]++)
            blocks_wanted++;
        if (b->out == OUT_HELD) {
            held_n++;
            for (int k = 0; k < b->n_granted; k++) {
                granted++;
                if (b->granted[k] < 0)
                    unparsed++;
                else if (owner[b->granted[k]]++)
                    twice_client++;
            }
        } else if (b->out == OUT_REFUSED) {
            refused++;
        } else {
            errors++;
            int j = 0;
            while (j < n_codes && codes[j][0] != b->code)
                j++;
            if (j < MAX_CODES) {
                if (j == n_codes)
                    codes[n_codes++][0] = b->code;
                codes[j][1]++;
            }
        }
    }
    qsort(lat, (size_t)cfg.buyers, sizeof *lat, cmp_u32);
    double secs = (double)elapsed / 1e9;
    double p50 = lat[cfg.buyers / 2] / 1000.0, p95 = lat[(long)cfg.buyers * 95 / 100] / 1000.0,
           p99 = lat[(long)cfg.buyers * 99 / 100] / 1000.0;
    long expected = cfg.mode == MODE_SEATS ? blocks_wanted * cfg.quantity
                    : (long)(cfg.seats - cfg.seats % cfg.quantity) < (long)cfg.buyers * cfg.quantity
                        ? cfg.seats - cfg.seats % cfg.quantity
                        : (long)cfg.buyers * cfg.quantity;

    /* the database's word, and the outbox */
    long long held_db = -1, twice_db = -1, outbox_left = -1;
    double drain_s = -1;
    if (pg) {
        held_db = query_count(pg, sql_held, true);
        twice_db = query_count(pg, sql_twice, true);
        for (;;) {
            outbox_left = query_count(pg, sql_outbox, false);
            double waited = (double)(sb_mono_ns() - t_end) / 1e9;
            if (outbox_left <= 0 || waited > 300) {
                if (outbox_left == 0)
                    drain_s = waited;
                break;
            }
            usleep(10000);
        }
    }

    bool ok = errors == 0 && twice_client == 0 && unparsed == 0 && granted == expected &&
              (!pg || (twice_db == 0 && held_db == granted && outbox_left == 0));
    printf(
        "{\"transport\":\"%s\",\"mode\":\"%s\",\"conns\":%d,\"buyers\":%d,\"seats\":%d,\"quantity\":%d,"
        "\"seconds\":%.3f,\"attempts_per_s\":%.1f,\"p50_ms\":%.2f,\"p95_ms\":%.2f,\"p99_ms\":%.2f,"
        "\"holds\":%ld,\"refused\":%ld,\"errors\":%ld,\"seats_granted\":%ld,\"seats_expected\":%ld,"
        "\"seats_held_db\":%lld,\"held_twice_db\":%lld,\"held_twice_answers\":%ld,"
        "\"outbox_drain_s\":%.3f,\"ok\":%s",
        cfg.gateway ? "rest" : "grpc", cfg.mode == MODE_SEATS ? "seats" : "best", cfg.conns, cfg.buyers,
        cfg.seats, cfg.quantity, secs, cfg.buyers / secs, p50, p95, p99, held_n, refused, errors,
        granted, expected, held_db, twice_db, twice_client, drain_s, ok ? "true" : "false");
    printf(",\"error_codes\":{");
    for (int j = 0; j < n_codes; j++)
        printf("%s\"%d\":%d", j ? "," : "", codes[j][0], codes[j][1]);
    printf("}}\n");
    fprintf(
        stderr,
        "bench-flash-sale: %s %s C=%d: %.0f attempts/s, p50 %.1f / p95 %.1f / p99 %.1f ms; %ld holds, "
        "%ld refused, %ld errors; seats granted %ld (expected %ld), held in db %lld, held twice %lld "
        "(db) "
        "%ld (answers); outbox drained %.2f s after the last answer\n",
        cfg.gateway ? "REST" : "gRPC", cfg.mode == MODE_SEATS ? "chosen seats" : "best available",
        cfg.conns, cfg.buyers / secs, p50, p95, p99, held_n, refused, errors, granted, expected, held_db,
        twice_db, twice_client, drain_s);
    if (*error_sample)
        fprintf(stderr, "bench-flash-sale: first error: %s\n", error_sample);

    for (int i = 0; i < cfg.buyers; i++)
        free(buyers[i].token);
    free(buyers);
    free(lat);
    free(owner);
    free(wanted);
    if (pg)
        PQfinish(pg);
    sb_channels_free_all();
    curl_global_cleanup();
    return ok ? 0 : 1;
}
