/* Booking-flow benchmark (issue 11): N bookings through the gateway, C
 * connections, each booking the whole saga a buyer sees:
 *
 *   POST /reservations {scheduleId, seatIds: [one seat]}      -> 201 PENDING_PAYMENT
 *   POST /payments (card 4242..., Idempotency-Key)            -> 201 APPROVED
 *   GET /reservations/{id} every --poll-ms until CONFIRMED    (payment.approved
 *                                                              through Kafka)
 *
 * Not a test: it measures; the runner is bench/booking_flow.py (`make
 * bench-booking`), the figures are in docs/benchmarks.md.
 *
 *   bench-booking-flow --gateway http://127.0.0.1:18080 --schedule ID
 *       --seats-file FILE [--bookings 1000] [--conns 64] [--poll-ms 10]
 *       [--timeout-ms 60000]
 *
 * Setup, not timed: one access token per booking, signed with the
 * platform's signing key (JWT_SIGNING_KEY_FILE: the bench stands in for the
 * auth service, as the tests do) for a fresh user id; booking i takes line i
 * of --seats-file (seat ids of the schedule, one a line). Load, timed: C
 * threads, each with one keep-alive connection, take the next booking as
 * soon as theirs is CONFIRMED. A booking's latency is from its hold leaving
 * to the answer that shows it CONFIRMED; bookings/s = N / (the first hold to
 * the last confirmation). A booking that fails (any other answer, or not
 * CONFIRMED within --timeout-ms) is counted as an error, the first shown.
 * One JSON line on stdout; exit status 1 when any booking failed. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sb/jwt.h"
#include "sb/log.h"
#include "sb/util.h"

#define TOKEN_TTL_S 3600
#define CARD "4242424242424242"

static struct {
    const char *gateway, *schedule, *seats_file;
    int bookings, conns, poll_ms, timeout_ms;
} cfg = {.bookings = 1000, .conns = 64, .poll_ms = 10, .timeout_ms = 60000};

typedef struct booking {
    char *token, *seat;
    int64_t hold_us, pay_us,
        lat_us; /* the hold's answer, the payment's, CONFIRMED seen: from the hold */
    bool ok;
} booking_t;

static booking_t *bk;
static atomic_int next_booking;
static atomic_long polls;
static char error_sample[512];
static pthread_mutex_t sample_mu = PTHREAD_MUTEX_INITIALIZER;

static _Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench-booking-flow: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void note_error(int i, const char *what, long status, const sb_buf_t *resp)
{
    pthread_mutex_lock(&sample_mu);
    if (!error_sample[0])
        snprintf(error_sample, sizeof error_sample, "booking %d: %s: HTTP %ld %.300s", i, what, status,
                 resp->buf ? resp->buf : "");
    pthread_mutex_unlock(&sample_mu);
}

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
    sb_buf_add(arg, p, sz * n);
    return sz * n;
}

/* One request on the thread's connection h: its HTTP status (0 when none),
 * the answer in resp. */
static long request(CURL *h, const char *method, const char *url, const char *token, const char *key,
                    const sb_buf_t *body, sb_buf_t *resp)
{
    char auth[SB_JWT_MAX_TOKEN + 32], idem[128];
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    hdrs = curl_slist_append(hdrs, auth);
    if (key) {
        snprintf(idem, sizeof idem, "Idempotency-Key: %s", key);
        hdrs = curl_slist_append(hdrs, idem);
    }
    sb_buf_reset(resp);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->buf);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)body->len);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    return status;
}

/* A string member of the JSON answer into out ("" when absent). */
static void member(const sb_buf_t *resp, const char *name, char *out, size_t n)
{
    out[0] = 0;
    json_t *j = json_loadb(resp->buf ? resp->buf : "", resp->len, 0, NULL);
    const char *v = json_string_value(json_object_get(j, name));
    if (v)
        snprintf(out, n, "%s", v);
    json_decref(j);
}

static void book(CURL *h, int i)
{
    booking_t *b = &bk[i];
    sb_buf_t body = SB_BUF_INIT, resp = SB_BUF_INIT;
    char url[512], rid[64], amount[32], status[32], key[128];
    int64_t t0 = sb_mono_ns();

    sb_buf_adds(&body, "{\"scheduleId\":");
    sb_buf_add_json_str(&body, cfg.schedule, strlen(cfg.schedule));
    sb_buf_adds(&body, ",\"seatIds\":[");
    sb_buf_add_json_str(&body, b->seat, strlen(b->seat));
    sb_buf_adds(&body, "]}");
    snprintf(url, sizeof url, "%s/reservations", cfg.gateway);
    long st = request(h, "POST", url, b->token, NULL, &body, &resp);
    member(&resp, "reservationId", rid, sizeof rid);
    member(&resp, "amount", amount, sizeof amount);
    if (st != 201 || !rid[0]) {
        note_error(i, "hold", st, &resp);
        goto out;
    }
    b->hold_us = (sb_mono_ns() - t0) / 1000;

    sb_buf_reset(&body);
    sb_buf_addf(&body,
                "{\"reservationId\":\"%s\",\"amount\":%s,\"method\":\"CARD\",\"cardNumber\":\"" CARD
                "\"}",
                rid, amount[0] ? amount : "0");
    snprintf(url, sizeof url, "%s/payments", cfg.gateway);
    snprintf(key, sizeof key, "bench-%d-%s", i, rid);
    st = request(h, "POST", url, b->token, key, &body, &resp);
    member(&resp, "status", status, sizeof status);
    if (st != 201 || strcmp(status, "APPROVED") != 0) {
        note_error(i, "payment", st, &resp);
        goto out;
    }
    b->pay_us = (sb_mono_ns() - t0) / 1000;

    snprintf(url, sizeof url, "%s/reservations/%s", cfg.gateway, rid);
    for (;;) {
        st = request(h, "GET", url, b->token, NULL, NULL, &resp);
        atomic_fetch_add(&polls, 1);
        member(&resp, "status", status, sizeof status);
        if (st == 200 && !strcmp(status, "CONFIRMED"))
            break;
        if (st != 200 || strcmp(status, "PENDING_PAYMENT") != 0) {
            note_error(i, "poll", st, &resp);
            goto out;
        }
        if ((sb_mono_ns() - t0) / 1000000 > cfg.timeout_ms) {
            note_error(i, "not CONFIRMED in time", st, &resp);
            goto out;
        }
        usleep((useconds_t)cfg.poll_ms * 1000);
    }
    b->lat_us = (sb_mono_ns() - t0) / 1000;
    b->ok = true;
out:
    sb_buf_release(&body);
    sb_buf_release(&resp);
}

static int64_t t_start;

static void *worker(void *arg)
{
    (void)arg;
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)cfg.timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    int i;
    while ((i = atomic_fetch_add(&next_booking, 1)) < cfg.bookings)
        book(h, i);
    curl_easy_cleanup(h);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (0..1) of the sorted v[0..n), in ms. */
static double pct(const int64_t *v, int n, double q)
{
    if (n == 0)
        return 0;
    int k = (int)(q * (n - 1) + 0.5);
    return (double)v[k] / 1000.0;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s --gateway URL --schedule ID --seats-file FILE [--bookings 1000] [--conns 64]\n"
            "       [--poll-ms 10] [--timeout-ms 60000]\n",
            argv0);
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        {"gateway", required_argument, 0, 'g'},    {"schedule", required_argument, 0, 's'},
        {"seats-file", required_argument, 0, 'f'}, {"bookings", required_argument, 0, 'n'},
        {"conns", required_argument, 0, 'c'},      {"poll-ms", required_argument, 0, 'p'},
        {"timeout-ms", required_argument, 0, 't'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'g': cfg.gateway = optarg; break;
        case 's': cfg.schedule = optarg; break;
        case 'f': cfg.seats_file = optarg; break;
        case 'n': cfg.bookings = atoi(optarg); break;
        case 'c': cfg.conns = atoi(optarg); break;
        case 'p': cfg.poll_ms = atoi(optarg); break;
        case 't': cfg.timeout_ms = atoi(optarg); break;
        default: usage(argv[0]);
        }
    }
    if (!cfg.gateway || !cfg.schedule || !cfg.seats_file || cfg.bookings < 1 || cfg.conns < 1 ||
        cfg.poll_ms < 0 || cfg.timeout_ms < 1)
        usage(argv[0]);
}

/* The tokens and seats of the bookings (not timed). */
static void prepare(void)
{
    bk = calloc((size_t)cfg.bookings, sizeof *bk);
    FILE *f = fopen(cfg.seats_file, "r");
    if (!bk || !f)
        die("%s: %m", cfg.seats_file);
    sb_buf_t err = SB_BUF_INIT;
    sb_jwt_signer_t *signer = sb_jwt_signer_from_env(&err);
    if (!signer)
        die("JWT_SIGNING_KEY_FILE: %s", err.buf);
    int64_t now = sb_now_ms() / 1000;
    for (int i = 0; i < cfg.bookings; i++) {
        char line[128];
        if (!fgets(line, sizeof line, f))
            die("%s: %d seats for %d bookings", cfg.seats_file, i, cfg.bookings);
        line[strcspn(line, "\r\n")] = 0;
        bk[i].seat = strdup(line);
        sb_jwt_claims_t c = {.iat = now, .exp = now + TOKEN_TTL_S};
        sb_uuid_v4(c.sub);
        snprintf(c.role, sizeof c.role, "USER");
        sb_uuid_v4(c.jti);
        if (sb_jwt_issue_es256(signer, &c, &bk[i].token, &err) != SB_OK)
            die("signing a token: %s", err.buf);
    }
    fclose(f);
    sb_jwt_signer_free(signer);
    sb_buf_release(&err);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    sb_log_init("bench-booking-flow");
    sb_log_set_level(SB_LOG_ERROR);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        die("curl_global_init failed");
    prepare();
    fprintf(stderr, "bench-booking-flow: %d bookings on %d connections via %s\n", cfg.bookings,
            cfg.conns, cfg.gateway);

    pthread_t *th = calloc((size_t)cfg.conns, sizeof *th);
    t_start = sb_mono_ns();
    for (int i = 0; i < cfg.conns; i++)
        if (pthread_create(&th[i], NULL, worker, NULL))
            die("pthread_create failed");
    for (int i = 0; i < cfg.conns; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(sb_mono_ns() - t_start) / 1e9;

    int n = 0;
    int64_t *lat = calloc((size_t)cfg.bookings, sizeof *lat),
            *hold = calloc((size_t)cfg.bookings, sizeof *hold),
            *pay = calloc((size_t)cfg.bookings, sizeof *pay);
    for (int i = 0; i < cfg.bookings; i++)
        if (bk[i].ok) {
            lat[n] = bk[i].lat_us;
            hold[n] = bk[i].hold_us;
            pay[n++] = bk[i].pay_us - bk[i].hold_us;
        }
    qsort(lat, (size_t)n, sizeof *lat, cmp_i64);
    qsort(hold, (size_t)n, sizeof *hold, cmp_i64);
    qsort(pay, (size_t)n, sizeof *pay, cmp_i64);
    int errors = cfg.bookings - n;
    printf("{\"bookings\":%d,\"conns\":%d,\"confirmed\":%d,\"errors\":%d,\"seconds\":%.3f,"
           "\"bookings_per_s\":%.1f,\"p50_ms\":%.1f,\"p99_ms\":%.1f,\"hold_p50_ms\":%.1f,"
           "\"pay_p50_ms\":%.1f,\"polls_per_booking\":%.2f}\n",
           cfg.bookings, cfg.conns, n, errors, secs, n / secs, pct(lat, n, 0.50), pct(lat, n, 0.99),
           pct(hold, n, 0.50), pct(pay, n, 0.50), (double)atomic_load(&polls) / (n ? n : 1));
    fprintf(stderr,
            "bench-booking-flow: %d confirmed, %d errors in %.2f s: %.1f bookings/s, p50 %.1f ms, p99 "
            "%.1f ms\n",
            n, errors, secs, n / secs, pct(lat, n, 0.50), pct(lat, n, 0.99));
    if (errors)
        fprintf(stderr, "bench-booking-flow: first error: %s\n", error_sample);
    for (int i = 0; i < cfg.bookings; i++) {
        free(bk[i].token);
        free(bk[i].seat);
    }
    free(bk);
    free(th);
    free(lat);
    free(hold);
    free(pay);
    curl_global_cleanup();
    return errors ? 1 : 0;
}
