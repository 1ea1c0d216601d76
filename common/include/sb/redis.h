/* Redis (hiredis) client. A few connections (REDIS_POOL_SIZE, default 4), each behind
 * a mutex; commands are short
 * (denylist, rate limits, idempotency keys). Every wait is bounded by
 * REDIS_TIMEOUT_MS (default 500): connecting, each command, and the wait for
 * the connection. A connection the server closed is replaced and the command
 * sent once more; after a timeout or a failed connect, calls fail at once
 * for a short backoff (100 ms doubling to 1 s), then the next call reconnects. */
#ifndef SB_REDIS_H
#define SB_REDIS_H
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdbool.h>

#include "sb/buf.h"
#include "sb/status.h"

typedef struct sb_redis sb_redis_t;

/* url: redis://host:port[/db]. Connects lazily on first use if the server is
 * down now. Caller frees with sb_redis_free. */
sb_redis_t *sb_redis_new(const char *url, sb_buf_t *err);
void sb_redis_free(sb_redis_t *r);
/* Runs one command (hiredis format). OK with *out the reply (caller frees with
 * freeReplyObject; a Redis error reply is a reply of type REDIS_REPLY_ERROR),
 * or UNAVAILABLE with *out NULL and err saying why ("redis 127.0.0.1:6379
 * unavailable: no answer within 500 ms") when Redis cannot be reached, does
 * not answer in time, or is in its reconnect backoff. Waits at most about
 * twice REDIS_TIMEOUT_MS (the connection's turn, then the answer). */
sb_status_t sb_redis_call(sb_redis_t *r, redisReply **out, sb_buf_t *err, const char *fmt, ...);
/* sb_redis_call with a va_list (for wrappers of their own). */
sb_status_t sb_redis_vcall(sb_redis_t *r, redisReply **out, sb_buf_t *err, const char *fmt, va_list ap);
/* The same returning the reply, or NULL (UNAVAILABLE) with err set. */
redisReply *sb_redis_cmd(sb_redis_t *r, sb_buf_t *err, const char *fmt, ...);
/* A fixed-window rate limit: counts one attempt of `client` at `scope` in
 * the current minute (key sb:rl:<scope>:<client>:<minute>). OK while the
 * count is within limit; RESOURCE_EXHAUSTED beyond ("too many attempts ...");
 * UNAVAILABLE when Redis cannot count (fail closed: an unlimited login is a
 * password oracle). The gateway counts per REST path, the services per RPC,
 * so a direct gRPC caller is held to the same limit as a REST one. */
sb_status_t sb_rate_limit(sb_redis_t *r, const char *scope, const char *client, long limit,
                          sb_buf_t *err);
/* A connection of its own to the same server, outside the pool (a
 * subscription: sb/denylist.h), connected within REDIS_TIMEOUT_MS and with
 * that socket timeout; NULL with err set. Caller frees with redisFree. */
redisContext *sb_redis_connect(sb_redis_t *r, sb_buf_t *err);
/* PING: true when the server answers (within the timeout). */
bool sb_redis_ping(sb_redis_t *r);

#endif
