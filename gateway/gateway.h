/* The HTTP/JSON gateway: the request pipeline (server.c) routes with the API
 * table (sb/api.h, generated from the .proto options); this header holds the
 * pieces the tests and fuzz harnesses reach without the server. */
#ifndef SB_GATEWAY_H
#define SB_GATEWAY_H
#include <stdbool.h>

#include "sb/api.h"
#include "sb/buf.h"
#include "sb/status.h"

/* Appends a binding's path template as clients know it: variables by their
 * JSON names ("/members/{user_id}" -> "/members/{userId}"). */
void gw_client_path(const char *tmpl, sb_buf_t *out);

/* Appends the OpenAPI 3 document of every REST binding in the API table. */
void gw_openapi(sb_buf_t *out);

/* ---- cached reads (etag.c) ---- */

#define GW_ETAG_LEN 18 /* "\"" + 16 hex digits + "\"" */

/* The headers a cached read's answer carries. */
typedef struct gw_cache_headers {
    bool set; /* false: none of these (the usual Cache-Control: no-store) */
    char etag[GW_ETAG_LEN + 1];
    char cache_control[48];
    const char *vary; /* NULL: none */
} gw_cache_headers_t;

/* The strong ETag of a body: the quoted hex of its 64-bit FNV-1a. */
void gw_etag_of(const char *body, size_t len, char out[GW_ETAG_LEN + 1]);
/* true when an If-None-Match value (a list of tags, or "*") names etag. */
bool gw_etag_matches(const char *if_none_match, const char *etag);
/* For the answer (*code, body) to a request of method m: when m is a cached
 * read, a GET, and *code is 200, fills h (ETag, Cache-Control, Vary; see
 * etag.c) and, when if_none_match (may be NULL) names the ETag, sets *code
 * to 304 and empties body. true when h was filled. m may be NULL. */
bool gw_cache_headers(const sb_api_method_t *m, const char *verb, bool signed_in,
                      const char *if_none_match, int *code, sb_buf_t *body, gw_cache_headers_t *h);

#endif
