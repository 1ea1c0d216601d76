/* The status -> HTTP table: pure, unit tested (tests/unit/test_status.c). */
#include "gateway.h"

int gw_http_status(sb_status_t st)
{
    switch (st) {
    case SB_OK: return 200;
    case SB_CANCELLED: return 499;
    case SB_INVALID_ARGUMENT: return 400;
    case SB_DEADLINE_EXCEEDED: return 504;
    case SB_NOT_FOUND: return 404;
    case SB_ALREADY_EXISTS: return 409;
    case SB_PERMISSION_DENIED: return 403;
    case SB_RESOURCE_EXHAUSTED: return 429;
    case SB_FAILED_PRECONDITION: return 400;
    case SB_ABORTED: return 409;
    case SB_OUT_OF_RANGE: return 400;
    case SB_UNIMPLEMENTED: return 501;
    case SB_UNAVAILABLE: return 503;
    case SB_UNAUTHENTICATED: return 401;
    case SB_UNKNOWN:
    case SB_INTERNAL:
    case SB_DATA_LOSS: return 500;
    }
    return 500;
}
