/* HTTP validators for cached reads (issue 13): a GET whose method carries
 * (sb.api.method).cache gets an ETag and Cache-Control, and an If-None-Match
 * that names the current ETag gets 304 with no body. The gateway answers a
 * repeat from its own copy (cached_answer in server.c, sb/rpc_cache.h), so a
 * revalidation costs no round trip and sends no body.
 *
 * The ETag is strong: the 64-bit FNV-1a of the exact JSON body, 16 hex
 * digits in quotes. The JSON encoder is deterministic (fields in .proto
 * order), so equal answers give equal tags.
 *
 * Cache-Control: a public method's answer is the same for everyone:
 * "public, max-age=<s>". A method whose answer depends on the caller is
 * "public, max-age=<s>" only for an anonymous request and "private,
 * no-cache" for a signed-in one (a browser keeps it, revalidates every
 * time), with "Vary: Authorization" on both so no shared cache hands one
 * caller's answer to another. max-age is max_age_ms in whole seconds
 * (rounded down): the lag bound of docs/internals.md "Cached reads". */
#include <stdio.h>
#include <string.h>

#include "gateway.h"

static uint64_t fnv1a64(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

void gw_etag_of(const char *body, size_t len, char out[GW_ETAG_LEN + 1])
{
    snprintf(out, GW_ETAG_LEN + 1, "\"%016llx\"", (unsigned long long)fnv1a64(body, len));
}

bool gw_etag_matches(const char *if_none_match, const char *etag)
{
    if (!if_none_match)
        return false;
    /* a comma-separated list of entity tags, or "*"; If-None-Match compares
     * weakly (RFC 9110 13.1.2), so a W/ prefix does not matter */
    const char *p = if_none_match;
    size_t elen = strlen(etag);
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        const char *end = p;
        if (*end == '"') {
            end = strchr(end + 1, '"');
            if (!end)
                return false;
            end++;
        } else {
            end += strcspn(end, ", \t");
        }
        if ((size_t)(end - p) == elen && !memcmp(p, etag, elen))
            return true;
        p = end;
    }
    return false;
}

bool gw_cache_headers(const sb_api_method_t *m, const char *verb, bool signed_in,
                      const char *if_none_match, int *code, sb_buf_t *body, gw_cache_headers_t *h)
{
    memset(h, 0, sizeof *h);
    if (!m || !m->cache.max_age_ms || strcmp(verb, "GET") != 0 || *code != 200)
        return false;
    gw_etag_of(body->buf, body->len, h->etag);
    if (m->cache.public_ || !signed_in)
        snprintf(h->cache_control, sizeof h->cache_control, "public, max-age=%u",
                 m->cache.max_age_ms / 1000);
    else
        snprintf(h->cache_control, sizeof h->cache_control, "private, no-cache");
    h->vary = m->cache.public_ ? NULL : "Authorization";
    h->set = true;
    if (gw_etag_matches(if_none_match, h->etag)) {
        *code = 304;
        sb_buf_reset(body);
    }
    return true;
}
