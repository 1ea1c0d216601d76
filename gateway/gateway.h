/* The HTTP/JSON gateway: the request pipeline (server.c) routes with the API
 * table (sb/api.h, generated from the .proto options); this header holds the
 * pieces the tests and fuzz harnesses reach without the server. */
#ifndef SB_GATEWAY_H
#define SB_GATEWAY_H
#include "sb/buf.h"
#include "sb/status.h"

/* Appends a binding's path template as clients know it: variables by their
 * JSON names ("/members/{user_id}" -> "/members/{userId}"). */
void gw_client_path(const char *tmpl, sb_buf_t *out);

/* Appends the OpenAPI 3 document of every REST binding in the API table. */
void gw_openapi(sb_buf_t *out);

#endif
