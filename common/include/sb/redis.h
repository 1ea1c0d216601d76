/* Redis (hiredis) client with reconnect. One connection behind a mutex;
 * commands are short (denylist, rate limits, idempotency keys). */
#ifndef SB_REDIS_H
#define SB_REDIS_H
#include <hiredis/hiredis.h>
#include <stdbool.h>

#include "sb/buf.h"
#include "sb/status.h"

typedef struct sb_redis sb_redis_t;

/* url: redis://host:port[/db]. Connects lazily on first use if the server is
 * down now. Caller frees with sb_redis_free. */
sb_redis_t *sb_redis_new(const char *url, sb_buf_t *err);
void sb_redis_free(sb_redis_t *r);
/* Runs one command (hiredis format). On an I/O error reconnects and retries
 * once. Returns the reply (caller frees with freeReplyObject) or NULL with err
 * set. A Redis error reply is returned as a reply of type REDIS_REPLY_ERROR. */
redisReply *sb_redis_cmd(sb_redis_t *r, sb_buf_t *err, const char *fmt, ...);
/* PING: true when the server answers. */
bool sb_redis_ping(sb_redis_t *r);

#endif
