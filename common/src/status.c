#include "sb/status.h"

static const char *const names[] = {
    [SB_OK] = "OK",
    [SB_CANCELLED] = "CANCELLED",
    [SB_UNKNOWN] = "UNKNOWN",
    [SB_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
    [SB_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
    [SB_NOT_FOUND] = "NOT_FOUND",
    [SB_ALREADY_EXISTS] = "ALREADY_EXISTS",
    [SB_PERMISSION_DENIED] = "PERMISSION_DENIED",
    [SB_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
    [SB_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
    [SB_ABORTED] = "ABORTED",
    [SB_OUT_OF_RANGE] = "OUT_OF_RANGE",
    [SB_UNIMPLEMENTED] = "UNIMPLEMENTED",
    [SB_INTERNAL] = "INTERNAL",
    [SB_UNAVAILABLE] = "UNAVAILABLE",
    [SB_DATA_LOSS] = "DATA_LOSS",
    [SB_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

const char *sb_status_name(sb_status_t st)
{
    if ((unsigned)st >= sizeof names / sizeof names[0] || !names[st])
        return "UNKNOWN";
    return names[st];
}
