/* Redis client against a stalled server, a refused port and the real Redis:
 * a command fails fast (within about REDIS_TIMEOUT_MS) with UNAVAILABLE
 * instead of hanging, a dead Redis is not retried on every call (backoff),
 * and a connection the server closed is replaced on the next call.
 *
 * The stalled server is a socket of this test listening on port 0 that never
 * accepts: the kernel completes the TCP handshake, nothing ever answers. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sb/config.h"
#include "sb/log.h"
#include "sb/redis.h"
#include "sb/util.h"
#include "sb_test_env.h"

#define TIMEOUT_MS 300

static void setup(void)
{
    sb_log_init("test-redis");
    sb_log_set_level(SB_LOG_ERROR);
    setenv("REDIS_TIMEOUT_MS", "300", 1);
}

TestSuite(redis, .init = setup, .timeout = 60);

/* A listening socket on 127.0.0.1:<port> that never accepts. Returns the fd. */
static int stalled_server(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 64), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

/* A port nothing listens on (bound once to get a free number, then closed). */
static int refused_port(void)
{
    int port;
    int fd = stalled_server(&port);
    close(fd);
    return port;
}

static sb_redis_t *client_of(const char *url)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_redis_t *r = sb_redis_new(url, &err);
    cr_assert_not_null(r, "%s", err.buf);
    sb_buf_release(&err);
    return r;
}

static sb_redis_t *client(int port)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    return client_of(url);
}

static double ms_since(int64_t t0)
{
    return (double)(sb_mono_ns() - t0) / 1e6;
}

/* One command; returns how long it took, *ok whether a reply came. */
static double timed_ping(sb_redis_t *r, bool *ok, sb_buf_t *err)
{
    int64_t t0 = sb_mono_ns();
    redisReply *rep;
    sb_status_t st = sb_redis_call(r, &rep, err, "PING");
    double ms = ms_since(t0);
    *ok = st == SB_OK;
    cr_assert(st == SB_OK || st == SB_UNAVAILABLE, "status %s", sb_status_name(st));
    cr_assert_eq(rep != NULL, *ok);
    if (rep)
        freeReplyObject(rep);
    return ms;
}

Test(redis, stalled_server_fails_within_the_timeout)
{
    int port;
    int fd = stalled_server(&port);
    sb_redis_t *r = client(port);
    sb_buf_t err = SB_BUF_INIT;
    bool ok;
    double ms = timed_ping(r, &ok, &err);
    fprintf(stderr, "stalled redis: command failed after %.0f ms (%s)\n", ms, err.buf);
    cr_assert(!ok);
    cr_assert_geq(ms, TIMEOUT_MS * 0.8, "waited for the timeout: %.0f ms", ms);
    cr_assert_leq(ms, TIMEOUT_MS * 1.5, "failed within about the timeout: %.0f ms", ms);
    cr_assert(strstr(err.buf, "unavailable") && strstr(err.buf, "no answer within 300 ms"),
              "a clear message: %s", err.buf);

    /* in the backoff that follows, calls fail at once */
    sb_buf_reset(&err);
    ms = timed_ping(r, &ok, &err);
    cr_assert(!ok);
    cr_assert_leq(ms, 20, "during the backoff: %.0f ms", ms);
    cr_assert(strstr(err.buf, "next attempt in"), "%s", err.buf);

    /* after it, the next call tries again (and times out again) */
    usleep(150 * 1000);
    sb_buf_reset(&err);
    ms = timed_ping(r, &ok, &err);
    cr_assert(!ok);
    cr_assert_geq(ms, TIMEOUT_MS * 0.8, "tried again: %.0f ms (%s)", ms, err.buf);
    sb_buf_release(&err);
    sb_redis_free(r);
    close(fd);
}

Test(redis, refused_port_fails_fast)
{
    sb_redis_t *r = client(refused_port());
    sb_buf_t err = SB_BUF_INIT;
    bool ok;
    double ms = timed_ping(r, &ok, &err);
    fprintf(stderr, "refused redis: command failed after %.1f ms (%s)\n", ms, err.buf);
    cr_assert(!ok);
    cr_assert_leq(ms, 100, "%.0f ms", ms);
    cr_assert(strstr(err.buf, "unavailable") && strstr(err.buf, "refused"), "%s", err.buf);
    /* a real connect attempt once the backoff (from the one in sb_redis_new) has passed */
    usleep(150 * 1000);
    sb_buf_reset(&err);
    ms = timed_ping(r, &ok, &err);
    cr_assert(!ok);
    cr_assert_leq(ms, 100, "%.0f ms", ms);
    cr_assert(strstr(err.buf, "refused") && !strstr(err.buf, "next attempt"), "%s", err.buf);
    sb_buf_release(&err);
    sb_redis_free(r);
}

/* Callers arriving together while Redis stalls: none waits much more than
 * the timeout (they do not queue behind each other's timeouts). */
#define CALLERS 8
struct caller {
    sb_redis_t *r;
    double ms;
    bool ok;
};

static void *call_once(void *arg)
{
    struct caller *c = arg;
    sb_buf_t err = SB_BUF_INIT;
    c->ms = timed_ping(c->r, &c->ok, &err);
    sb_buf_release(&err);
    return NULL;
}

Test(redis, concurrent_callers_of_a_stalled_server_all_fail_fast)
{
    int port;
    int fd = stalled_server(&port);
    sb_redis_t *r = client(port);
    pthread_t t[CALLERS];
    struct caller c[CALLERS];
    for (int i = 0; i < CALLERS; i++) {
        c[i] = (struct caller){.r = r};
        pthread_create(&t[i], NULL, call_once, &c[i]);
    }
    double worst = 0;
    for (int i = 0; i < CALLERS; i++) {
        pthread_join(t[i], NULL);
        cr_assert(!c[i].ok);
        if (c[i].ms > worst)
            worst = c[i].ms;
    }
    fprintf(stderr, "stalled redis, %d concurrent callers: the slowest failed after %.0f ms\n", CALLERS,
            worst);
    cr_assert_leq(worst, TIMEOUT_MS * 2.5, "slowest caller: %.0f ms", worst);
    sb_redis_free(r);
    close(fd);
}

/* ---- the real Redis ---- */

static const char *redis_url(void)
{
    return sb_cfg_str("REDIS_URL", "redis://127.0.0.1:6379");
}

/* The id of the connection named `name` in CLIENT LIST ("" if none). */
static void client_id_by_name(const char *name, char id[32])
{
    sb_redis_t *admin = client_of(redis_url());
    sb_buf_t err = SB_BUF_INIT;
    redisReply *rep;
    cr_assert_eq(sb_redis_call(admin, &rep, &err, "CLIENT LIST"), SB_OK, "%s", err.buf);
    cr_assert_eq(rep->type, REDIS_REPLY_STRING);
    id[0] = '\0';
    char needle[96];
    snprintf(needle, sizeof needle, " name=%s ", name);
    for (char *line = rep->str; line && *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[1024];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        if (strstr(buf, needle) && !strncmp(buf, "id=", 3))
            snprintf(id, 32, "%.*s", (int)strcspn(buf + 3, " "), buf + 3);
        line = end ? end + 1 : NULL;
    }
    freeReplyObject(rep);
    sb_redis_free(admin);
    sb_buf_release(&err);
}

static void run_ok(sb_redis_t *r, const char *what, const char *fmt, const char *arg)
{
    sb_buf_t err = SB_BUF_INIT;
    redisReply *rep;
    cr_assert_eq(sb_redis_call(r, &rep, &err, fmt, arg), SB_OK, "%s: %s", what, err.buf);
    cr_assert_neq(rep->type, REDIS_REPLY_ERROR, "%s: %s", what, rep->str);
    freeReplyObject(rep);
    sb_buf_release(&err);
}

/* Only the connection this test made is killed (found by its name). */
Test(redis, connection_closed_by_the_server_is_replaced_on_the_next_call)
{
    sb_redis_t *r = client_of(redis_url());
    char name[64], id[32], id2[32];
    snprintf(name, sizeof name, "sb-test-redis-%d", (int)getpid());
    run_ok(r, "setname", "CLIENT SETNAME %s", name);
    client_id_by_name(name, id);
    cr_assert(id[0], "the test's connection is listed");

    sb_redis_t *admin = client_of(redis_url());
    run_ok(admin, "kill", "CLIENT KILL ID %s", id);
    sb_redis_free(admin);
    client_id_by_name(name, id2);
    cr_assert_eq(id2[0], '\0', "killed");

    /* the next call reconnects and succeeds, no failure seen by the caller */
    int64_t t0 = sb_mono_ns();
    run_ok(r, "after the kill", "SET sb:test:redis:%s 1 EX 10", name);
    fprintf(stderr, "redis connection killed: next call succeeded after %.1f ms\n", ms_since(t0));
    run_ok(r, "setname again", "CLIENT SETNAME %s", name);
    client_id_by_name(name, id2);
    cr_assert(id2[0] && strcmp(id, id2) != 0, "a new connection (%s, was %s)", id2, id);
    cr_assert(sb_redis_ping(r));
    sb_redis_free(r);
}
