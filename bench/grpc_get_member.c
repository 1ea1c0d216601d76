/* Load generator for the direct gRPC paths of the benchmarks: N threads
 * (one per "connection": calls in flight) each call one RPC in a loop for D
 * seconds, as the gateway would. Prints requests/s and the p50/p99 latency.
 *
 *   [SB_BENCH_TOKEN=<access token>] [SB_BENCH_RPC=/pkg.Service/Method]
 *       bench-grpc-get-member <target> <id> [threads=64] [seconds=10]
 *
 * SB_BENCH_RPC names the method, MemberService/GetMember by default (the
 * identity benchmark); a read is any method whose request's first field is
 * a string: the id goes there ("/sb.performance.PerformanceService/
 * GetPerformance": bench/cached_reads.py, bench/gateway_compare.py), with
 * SB_BENCH_TOKEN as the bearer, no token when it is unset.
 *
 * "/sb.reservation.ReservationService/CreateReservation" is the flash-sale
 * hold of one chosen seat on schedule <id> (bench/gateway_compare.py): call
 * i is buyer i's (its bearer line i of SB_BENCH_TOKENS, a file of access
 * tokens: a buyer holds once, so more calls than tokens are errors) for seat
 * i / n of grade SB_BENCH_GRADES[i % n] ("R" or "R,S,A,B"): every call a
 * different free seat, every hold granted.
 *
 * Every thread uses the process's one channel to the target (HTTP/2
 * multiplexes the calls), like the gateway does. Exit status 1 when any
 * call failed (the first failure is shown); the JSON line counts them. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reservation.pb-c.h"
#include "sb/api.h"
#include "sb/log.h"
#include "sb/rpc.h"
#include "sb/util.h"

#define MAX_SAMPLES (1u << 22)
#define MAX_THREADS 1024
#define MAX_GRADES 8
#define HOLD_PATH "/sb.reservation.ReservationService/CreateReservation"

static const char *target, *user_id;
static const sb_api_method_t *rpc; /* what is called: GetMember unless SB_BENCH_RPC */
static bool hold;                  /* rpc is CreateReservation */
static char **tokens;              /* hold: one per buyer */
static size_t n_tokens;
static atomic_size_t next_buyer;
static char *grades[MAX_GRADES];
static size_t n_grades;
static size_t per_thread; /* latency samples each thread keeps */
static int64_t stop_at;
static uint32_t *lat_us;
static size_t n_lat;
static unsigned long errors;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

/* The id of seat k of a grade, as the inventory names them
 * (0001_inventory.sql): "<grade>-<row>-<number>", rows of 20 from "A"
 * (bijective base 26: A..Z, AA, AB, ...), numbers from 1. */
static void seat_id(const char *grade, size_t k, char *out, size_t n)
{
    char rev[8], row[8];
    size_t r = k / 20 + 1, len = 0;
    while (r > 0 && len < sizeof rev - 1) {
        r--;
        rev[len++] = (char)('A' + r % 26);
        r /= 26;
    }
    for (size_t i = 0; i < len; i++)
        row[i] = rev[len - 1 - i];
    row[len] = 0;
    snprintf(out, n, "%s-%s-%zu", grade, row, k % 20 + 1);
}

/* One call: the read of req, or the next buyer's hold. */
static sb_status_t call_once(sb_channel_t *ch, ProtobufCMessage *req, sb_arena_t *a, sb_buf_t *err)
{
    ProtobufCMessage *resp = NULL;
    sb_call_opts_t o = {.timeout_ms = 30000, .token = getenv("SB_BENCH_TOKEN")};
    if (!hold)
        return sb_rpc_call(ch, rpc->service, rpc->rpc->name, req, a, &resp, &o, err);
    size_t i = atomic_fetch_add(&next_buyer, 1);
    if (i >= n_tokens) {
        sb_buf_addf(err, "more calls than the %zu buyers of SB_BENCH_TOKENS", n_tokens);
        return SB_RESOURCE_EXHAUSTED;
    }
    Sb__Reservation__CreateReservationRequest h = SB__RESERVATION__CREATE_RESERVATION_REQUEST__INIT;
    char seat[64], *ids[1] = {seat};
    seat_id(grades[i % n_grades], i / n_grades, seat, sizeof seat);
    h.schedule_id = (char *)user_id;
    h.n_seat_ids = 1;
    h.seat_ids = ids;
    o.token = tokens[i];
    return sb_rpc_call(ch, rpc->service, rpc->rpc->name, &h.base, a, &resp, &o, err);
}

static void *worker(void *arg)
{
    (void)arg;
    sb_channel_t *ch = sb_channel_get(target);
    /* a read's request: its first field (user_id, performance_id ...) is the id */
    const ProtobufCMessageDescriptor *in = rpc->rpc->input;
    ProtobufCMessage *req = calloc(1, in->sizeof_message);
    protobuf_c_message_init(in, req);
    *(const char **)(void *)((char *)req + in->fields[0].offset) = user_id;
    uint32_t *mine = malloc(sizeof(uint32_t) * per_thread);
    size_t n = 0;
    unsigned long errs = 0;
    while (sb_now_ms() < stop_at) {
        sb_arena_t *a = sb_arena_new();
        sb_buf_t err = SB_BUF_INIT;
        int64_t t0 = sb_mono_ns();
        sb_status_t st = call_once(ch, req, a, &err);
        int64_t dt = sb_mono_ns() - t0;
        if (st != SB_OK) {
            if (!errs)
                fprintf(stderr, "%s: %s: %s\n", rpc->rpc->name, sb_status_name(st), err.buf);
            errs++;
        } else if (n < per_thread) {
            mine[n++] = (uint32_t)(dt / 1000);
        }
        sb_buf_release(&err);
        sb_arena_free(a);
    }
    free(req);
    pthread_mutex_lock(&mu);
    memcpy(lat_us + n_lat, mine, n * sizeof *mine);
    n_lat += n;
    errors += errs;
    pthread_mutex_unlock(&mu);
    free(mine);
    return NULL;
}

/* SB_BENCH_TOKENS's lines into tokens; SB_BENCH_GRADES into grades. */
static int load_hold_inputs(void)
{
    const char *path = getenv("SB_BENCH_TOKENS");
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) {
        fprintf(stderr, "CreateReservation: SB_BENCH_TOKENS must name a file of access tokens\n");
        return -1;
    }
    size_t cap = 0;
    char *line = NULL;
    size_t len = 0;
    while (getline(&line, &len, f) > 0) {
        line[strcspn(line, "\r\n")] = 0;
        if (!*line)
            continue;
        if (n_tokens == cap) {
            cap = cap ? cap * 2 : 1024;
            tokens = realloc(tokens, cap * sizeof *tokens);
        }
        tokens[n_tokens++] = strdup(line);
    }
    free(line);
    fclose(f);
    static char gbuf[256];
    snprintf(gbuf, sizeof gbuf, "%s", getenv("SB_BENCH_GRADES") ? getenv("SB_BENCH_GRADES") : "R");
    for (char *save = NULL, *g = strtok_r(gbuf, ",", &save); g && n_grades < MAX_GRADES;
         g = strtok_r(NULL, ",", &save))
        grades[n_grades++] = g;
    return n_tokens && n_grades ? 0 : -1;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s <target> <id> [threads=64] [seconds=10]\n", argv[0]);
        return 2;
    }
    sb_log_init("bench");
    sb_log_set_level(SB_LOG_ERROR);
    target = argv[1];
    user_id = argv[2];
    const char *path = getenv("SB_BENCH_RPC");
    rpc = sb_api_find_path(path && *path ? path : "/sb.member.MemberService/GetMember");
    if (!rpc || rpc->rpc->input->n_fields == 0 ||
        rpc->rpc->input->fields[0].type != PROTOBUF_C_TYPE_STRING) {
        fprintf(stderr, "SB_BENCH_RPC: not a method whose request starts with a string field\n");
        return 2;
    }
    hold = path && !strcmp(path, HOLD_PATH);
    int threads = argc > 3 ? atoi(argv[3]) : 64;
    int seconds = argc > 4 ? atoi(argv[4]) : 10;
    if (threads < 1 || threads > MAX_THREADS || seconds < 1)
        return 2;
    if (hold && load_hold_inputs() != 0)
        return 2;
    per_thread = MAX_SAMPLES / (size_t)threads;
    lat_us = malloc(sizeof(uint32_t) * MAX_SAMPLES);
    static pthread_t t[MAX_THREADS];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int64_t t0 = sb_now_ms();
    stop_at = t0 + seconds * 1000L;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], &attr, worker, NULL) != 0) {
            fprintf(stderr, "cannot start thread %d\n", i);
            return 2;
        }
    pthread_attr_destroy(&attr);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    double secs = (double)(sb_now_ms() - t0) / 1000.0;
    qsort(lat_us, n_lat, sizeof *lat_us, cmp_u32);
    double p50 = n_lat ? lat_us[n_lat / 2] / 1000.0 : 0,
           p99 = n_lat ? lat_us[n_lat * 99 / 100] / 1000.0 : 0;
    printf("{\"requests\":%zu,\"errors\":%lu,\"seconds\":%.2f,\"rps\":%.0f,\"p50_ms\":%.2f,\"p99_ms\":%."
           "2f}\n",
           n_lat, errors, secs, (double)n_lat / secs, p50, p99);
    free(lat_us);
    for (size_t i = 0; i < n_tokens; i++)
        free(tokens[i]);
    free(tokens);
    sb_channels_free_all();
    return errors ? 1 : 0;
}
