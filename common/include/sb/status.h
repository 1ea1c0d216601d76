/* Status codes shared by every module; the numbers are the canonical gRPC
 * codes so a status crosses the wire unchanged. Numbers are never reused. */
#ifndef SB_STATUS_H
#define SB_STATUS_H

typedef enum sb_status {
    SB_OK = 0,
    SB_CANCELLED = 1,
    SB_UNKNOWN = 2,
    SB_INVALID_ARGUMENT = 3,
    SB_DEADLINE_EXCEEDED = 4,
    SB_NOT_FOUND = 5,
    SB_ALREADY_EXISTS = 6,
    SB_PERMISSION_DENIED = 7,
    SB_RESOURCE_EXHAUSTED = 8,
    SB_FAILED_PRECONDITION = 9,
    SB_ABORTED = 10,
    SB_OUT_OF_RANGE = 11,
    SB_UNIMPLEMENTED = 12,
    SB_INTERNAL = 13,
    SB_UNAVAILABLE = 14,
    SB_DATA_LOSS = 15,
    SB_UNAUTHENTICATED = 16,
} sb_status_t;

/* "NOT_FOUND" etc.; static string, never NULL ("UNKNOWN" for out of range). */
const char *sb_status_name(sb_status_t st);

#endif
