/* A work-around for libmicrohttpd's epoll loop, linked into sb-gateway only.
 *
 * libmicrohttpd (0.9.75, Debian 12's, and upstream up to at least 2025-04)
 * drains its epoll set in a loop:
 *
 *     num_events = MAX_EVENTS;                  (128)
 *     while (MAX_EVENTS == num_events)
 *         num_events = epoll_wait(epfd, events, MAX_EVENTS, timeout_ms);
 *
 * with timeout_ms computed once, before the first call: up to the idle
 * timeout (30 s) when no connection was ready then. When one call fills all
 * 128 slots it calls again with that same timeout, and if nothing else is
 * ready at that moment it sleeps there, holding the 128 connections it has
 * just collected (their requests already counted as read-ready, so no new
 * edge will come for them) until some other event or the timeout wakes it:
 * requests unanswered for up to 30 s, then closed as idle. Seen as the
 * "kind 1" slow runs of bench/fill_cycles.py (256 readers resumed at once,
 * 128 per event loop) and as bench/idle_rss.py's 128 failed connections
 * (docs/benchmarks.md); e2e/test_gateway_epoll reproduces it.
 *
 * The gateway's own definition of epoll_wait takes the place of libc's for
 * every caller in the process (the executable comes first in symbol lookup;
 * exported by gateway/CMakeLists.txt). It is libc's epoll_pwait with no
 * signal mask, which is what epoll_wait is (epoll_wait(2)), except that a call on the same
 * thread and epoll descriptor right after one that filled its array does
 * not wait: timeout 0, which epoll_wait(2) allows for any caller (it may
 * return 0 events). Other callers (gRPC's poller) at most see one poll that
 * returns at once. */
#include <stddef.h>
#include <sys/epoll.h>

/* the descriptor whose last call on this thread filled the array, or -1 */
static _Thread_local int full_epfd = -1;

int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
{
    if (epfd == full_epfd)
        timeout = 0;
    int n = epoll_pwait(epfd, events, maxevents, timeout, NULL);
    full_epfd = n > 0 && n == maxevents ? epfd : -1;
    return n;
}
