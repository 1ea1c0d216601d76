/* Status codes shared by every module; the numbers are the canonical gRPC
 * codes so a status crosses the wire unchanged. Numbers are never reused.
 *
 * One table (SB_STATUS_TABLE) says, per status, its name, its gRPC code and
 * the HTTP status the gateway answers with; the enum, sb_status_name and
 * sb_status_http are generated from it, so they cannot disagree. */
#ifndef SB_STATUS_H
#define SB_STATUS_H

/* XX(name, gRPC code, HTTP status). HTTP follows grpc-gateway's mapping,
 * but CANCELLED is nginx's 499 (the client went away). */
#define SB_STATUS_TABLE(XX)                                                                             \
    XX(OK, 0, 200)                                                                                      \
    XX(CANCELLED, 1, 499)                                                                               \
    XX(UNKNOWN, 2, 500)                                                                                 \
    XX(INVALID_ARGUMENT, 3, 400)                                                                        \
    XX(DEADLINE_EXCEEDED, 4, 504)                                                                       \
    XX(NOT_FOUND, 5, 404)                                                                               \
    XX(ALREADY_EXISTS, 6, 409)                                                                          \
    XX(PERMISSION_DENIED, 7, 403)                                                                       \
    XX(RESOURCE_EXHAUSTED, 8, 429)                                                                      \
    XX(FAILED_PRECONDITION, 9, 400)                                                                     \
    XX(ABORTED, 10, 409)                                                                                \
    XX(OUT_OF_RANGE, 11, 400)                                                                           \
    XX(UNIMPLEMENTED, 12, 501)                                                                          \
    XX(INTERNAL, 13, 500)                                                                               \
    XX(UNAVAILABLE, 14, 503)                                                                            \
    XX(DATA_LOSS, 15, 500)                                                                              \
    XX(UNAUTHENTICATED, 16, 401)

typedef enum sb_status {
#define SB_STATUS_ENUM_(name, code, http) SB_##name = code,
    SB_STATUS_TABLE(SB_STATUS_ENUM_)
#undef SB_STATUS_ENUM_
} sb_status_t;

/* "NOT_FOUND" etc.; static string, never NULL ("UNKNOWN" for out of range). */
const char *sb_status_name(sb_status_t st);
/* The HTTP status of st (500 for out of range). */
int sb_status_http(sb_status_t st);

#endif
