/* Cached RPC answers (sb/rpc_cache.h): the process's cache, its keys and
 * the invalidation hooks that the gRPC server and the inbox call. Groups are
 * the methods' indexes in the API table; which methods a finished call
 * clears is worked out once, at the first use, from the table. */
#include "sb/rpc_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sb/alloc.h"
#include "sb/config.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/util.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static sb_cache_t *answers;
/* per API row: the metric names of a cached method; for a method some
 * cached method names in invalidated_by_rpcs, the rows it clears */
static struct row_info {
    char *hit, *miss, *invalidated;
    size_t *clears;
    size_t n_clears;
} * info;

static bool named_in(const char *const *list, const char *name)
{
    for (; list && *list; list++)
        if (!strcmp(*list, name))
            return true;
    return false;
}

static char *metric_name(const char *family, const sb_api_method_t *m, const char *result)
{
    sb_buf_t b = SB_BUF_INIT;
    sb_buf_addf(&b, "%s{method=\"/%s/%s\"%s%s%s}", family, m->service->name, m->rpc->name,
                result ? ",result=\"" : "", result ? result : "", result ? "\"" : "");
    return sb_buf_detach(&b, NULL);
}

static void init(void)
{
    long entries = sb_cfg_int("RPC_CACHE_MAX_ENTRIES", 10000, 0, 10000000);
    long bytes = sb_cfg_int("RPC_CACHE_MAX_BYTES", 64L << 20, 4096, 1L << 40);
    info = sb_calloc(sb_api_n_methods ? sb_api_n_methods : 1, sizeof *info);
    for (size_t i = 0; i < sb_api_n_methods; i++) {
        const sb_api_method_t *m = &sb_api_methods[i];
        if (m->cache.max_age_ms) {
            info[i].hit = metric_name("sb_rpc_cache_requests_total", m, "hit");
            info[i].miss = metric_name("sb_rpc_cache_requests_total", m, "miss");
            info[i].invalidated = metric_name("sb_rpc_cache_invalidated_total", m, NULL);
        }
        for (size_t j = 0; j < sb_api_n_methods; j++) {
            const sb_api_method_t *r = &sb_api_methods[j];
            if (r->cache.max_age_ms && r->service == m->service &&
                named_in(r->cache.invalidated_by_rpcs, m->rpc->name)) {
                info[i].clears = sb_realloc(info[i].clears, (info[i].n_clears + 1) * sizeof(size_t));
                info[i].clears[info[i].n_clears++] = j;
            }
        }
    }
    if (entries > 0)
        answers = sb_cache_new(sb_api_n_methods, (size_t)entries, (size_t)bytes);
}

sb_cache_t *sb_rpc_cache(void)
{
    pthread_once(&once, init);
    return answers;
}

static int64_t mono_ms(void)
{
    return sb_mono_ns() / 1000000;
}

/* The string field `name` of m; NULL when m has none (or it is empty). */
static const char *string_field(const ProtobufCMessage *m, const char *name)
{
    if (!m || !name)
        return NULL;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    if (!f || f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    const char *v = *(const char *const *)(const void *)((const char *)m + f->offset);
    return v && *v ? v : NULL;
}

static void update_gauges(void)
{
    sb_cache_stats_t st;
    sb_cache_stats(answers, &st);
    sb_metrics_gauge("sb_rpc_cache_entries", (double)st.entries);
    sb_metrics_gauge("sb_rpc_cache_bytes", (double)st.bytes);
}

bool sb_rpc_cache_lookup(sb_rpc_cache_call_t *cc, const sb_api_method_t *api, const sb_rpc_ctx_t *ctx,
                         const ProtobufCMessage *req, const void *data, size_t len, sb_buf_t *answer)
{
    *cc = (sb_rpc_cache_call_t){.key = SB_BUF_INIT};
    if (!api || !api->cache.max_age_ms || !sb_rpc_cache())
        return false;
    size_t group = (size_t)(api - sb_api_methods);
    /* principal \0-separated (never part of a public method's key), then the request */
    if (!api->cache.public_) {
        sb_buf_adds(&cc->key, ctx->user_id ? ctx->user_id : "");
        sb_buf_addch(&cc->key, '\0');
        sb_buf_adds(&cc->key, ctx->user_role ? ctx->user_role : "");
        sb_buf_addch(&cc->key, '\0');
        sb_buf_adds(&cc->key, ctx->caller_service ? ctx->caller_service : "");
        sb_buf_addch(&cc->key, '\0');
    }
    sb_buf_add(&cc->key, data, len);
    /* the generation before the look-up: a miss reads the source after it */
    cc->gen = sb_cache_generation(answers, group);
    int64_t now = mono_ms(), expires = 0;
    if (sb_cache_get(answers, group, cc->key.buf, cc->key.len, now, answer, &expires)) {
        cc->ttl_ms = expires - now;
        sb_metrics_count(info[group].hit, 1);
        return true;
    }
    sb_metrics_count(info[group].miss, 1);
    cc->api = api;
    cc->tag = string_field(req, api->cache.key_field);
    return false;
}

void sb_rpc_cache_store(sb_rpc_cache_call_t *cc, const void *answer, size_t len, int64_t ttl_ms)
{
    if (!cc->api || ttl_ms == 0)
        return;
    size_t group = (size_t)(cc->api - sb_api_methods), evicted = 0;
    int64_t age = cc->api->cache.max_age_ms;
    if (ttl_ms > 0 && ttl_ms < age)
        age = ttl_ms;
    if (sb_cache_put(answers, group, cc->key.buf, cc->key.len, cc->tag, answer, len, mono_ms() + age,
                     cc->gen, &evicted)) {
        if (evicted)
            sb_metrics_count("sb_rpc_cache_evictions_total", evicted);
        update_gauges();
    }
}

void sb_rpc_cache_call_release(sb_rpc_cache_call_t *cc)
{
    sb_buf_release(&cc->key);
    cc->api = NULL;
}

static void clear(size_t group, const char *tag)
{
    size_t n = sb_cache_invalidate(answers, group, tag);
    if (n) {
        sb_metrics_count(info[group].invalidated, n);
        update_gauges();
    }
}

void sb_rpc_cache_after_call(const sb_api_method_t *api, const ProtobufCMessage *req)
{
    if (!api || !sb_rpc_cache())
        return;
    const struct row_info *w = &info[api - sb_api_methods];
    for (size_t i = 0; i < w->n_clears; i++) {
        const sb_api_method_t *r = &sb_api_methods[w->clears[i]];
        clear(w->clears[i], string_field(req, r->cache.key_field));
    }
}

bool sb_rpc_cache_event_matches(const char *entry, const char *type)
{
    size_t n = strlen(entry);
    if (n && entry[n - 1] == '.')
        return !strncmp(entry, type, n);
    return !strcmp(entry, type);
}

void sb_rpc_cache_event(const char *type, const char *aggregate_id)
{
    if (!type || !sb_rpc_cache())
        return;
    for (size_t i = 0; i < sb_api_n_methods; i++) {
        const sb_api_cache_t *c = &sb_api_methods[i].cache;
        if (!c->max_age_ms)
            continue;
        for (const char *const *t = c->invalidated_by; t && *t; t++)
            if (sb_rpc_cache_event_matches(*t, type)) {
                clear(i, c->key_is_aggregate && aggregate_id && *aggregate_id ? aggregate_id : NULL);
                break;
            }
    }
}
