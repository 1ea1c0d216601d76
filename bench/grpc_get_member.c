/* Load generator for the direct gRPC path of the identity benchmark:
 * N threads (one per "connection") each call MemberService/GetMember in a
 * loop for D seconds with the user's access token (SB_BENCH_TOKEN) as its
 * bearer, as the gateway would. Prints requests/s and the p50/p99 latency.
 *
 *   SB_BENCH_TOKEN=<access token> bench-grpc-get-member <target> <user-id> [threads=64] [seconds=10]
 *
 * SB_BENCH_RPC="/sb.performance.PerformanceService/GetPerformance" calls that
 * method instead, with the id as its request's first field (a string), and
 * no token when SB_BENCH_TOKEN is unset (the cached-reads benchmark,
 * bench/cached_reads.py).
 *
 * Every thread uses the process's one channel to the target (HTTP/2
 * multiplexes the calls), like the gateway does. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/api.h"
#include "sb/log.h"
#include "sb/rpc.h"
#include "sb/util.h"

#define MAX_SAMPLES (1u << 22)

static const char *target, *user_id;
static const sb_api_method_t *rpc; /* what is called: GetMember unless SB_BENCH_RPC */
static int64_t stop_at;
static uint32_t *lat_us;
static size_t n_lat;
static unsigned long errors;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg)
{
    (void)arg;
    sb_channel_t *ch = sb_channel_get(target);
    /* the request: its first field (user_id, performance_id ...) is the id */
    const ProtobufCMessageDescriptor *in = rpc->rpc->input;
    ProtobufCMessage *req = calloc(1, in->sizeof_message);
    protobuf_c_message_init(in, req);
    *(const char **)(void *)((char *)req + in->fields[0].offset) = user_id;
    sb_call_opts_t o = {.timeout_ms = 5000, .token = getenv("SB_BENCH_TOKEN")};
    uint32_t *mine = malloc(sizeof(uint32_t) * (MAX_SAMPLES / 64));
    size_t n = 0;
    unsigned long errs = 0;
    while (sb_now_ms() < stop_at) {
        sb_arena_t *a = sb_arena_new();
        sb_buf_t err = SB_BUF_INIT;
        ProtobufCMessage *resp = NULL;
        int64_t t0 = sb_mono_ns();
        sb_status_t st = sb_rpc_call(ch, rpc->service, rpc->rpc->name, req, a, &resp, &o, &err);
        int64_t dt = sb_mono_ns() - t0;
        if (st != SB_OK) {
            if (!errs)
                fprintf(stderr, "%s: %s: %s\n", rpc->rpc->name, sb_status_name(st), err.buf);
            errs++;
        } else if (n < MAX_SAMPLES / 64) {
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

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s <target> <user-id> [threads=64] [seconds=10]\n", argv[0]);
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
    int threads = argc > 3 ? atoi(argv[3]) : 64;
    int seconds = argc > 4 ? atoi(argv[4]) : 10;
    if (threads < 1 || threads > 64 || seconds < 1)
        return 2;
    lat_us = malloc(sizeof(uint32_t) * MAX_SAMPLES);
    pthread_t t[64];
    int64_t t0 = sb_now_ms();
    stop_at = t0 + seconds * 1000L;
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker, NULL);
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
    sb_channels_free_all();
    return errors ? 1 : 0;
}
