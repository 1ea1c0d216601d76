/* Password hashing: libsodium crypto_pwhash_str (Argon2id), with a counting
 * semaphore bounding how many hashes are computed at once.
 *
 * Configuration (environment):
 *   PWHASH_OPSLIMIT     Argon2id passes; default crypto_pwhash_OPSLIMIT_INTERACTIVE (2)
 *   PWHASH_MEMLIMIT     Argon2id memory in bytes; default crypto_pwhash_MEMLIMIT_INTERACTIVE
 *                       (64 MiB). Each running hash holds this much memory.
 *   PWHASH_CONCURRENCY  hashes/verifications computed at once; default 2. Peak
 *                       hashing memory is PWHASH_CONCURRENCY x PWHASH_MEMLIMIT;
 *                       further callers wait (up to their deadline, at most 10 s)
 *                       and then get RESOURCE_EXHAUSTED.
 * Existing hashes keep their own parameters (they are stored in the hash
 * string); a successful login with outdated parameters rehashes (member.c).
 *
 * Callers hash outside any database transaction and without holding a pooled
 * connection: a hash takes tens of milliseconds by design. */
#include <errno.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "member.h"
#include "sb/alloc.h"
#include "sb/config.h"
#include "sb/log.h"
#include "sb/util.h"

#define SLOT_WAIT_MAX_MS 10000

struct pw_hasher {
    unsigned long long opslimit;
    size_t memlimit;
    sem_t slots;
    char dummy[PW_HASH_MAX]; /* hash of a random secret: the stand-in for unknown accounts */
};

/* Takes a hashing slot, waiting until deadline_ms at most. */
static sb_status_t slot_take(pw_hasher_t *h, int64_t deadline_ms, sb_buf_t *err)
{
    int64_t now = sb_now_ms();
    bool caller_deadline = deadline_ms <= now + SLOT_WAIT_MAX_MS;
    int64_t until = caller_deadline ? deadline_ms : now + SLOT_WAIT_MAX_MS;
    if (until <= now) {
        sb_buf_adds(err, "deadline exceeded before the password could be checked");
        return SB_DEADLINE_EXCEEDED;
    }
    struct timespec ts = {.tv_sec = (time_t)(until / 1000), .tv_nsec = (long)(until % 1000) * 1000000L};
    for (;;) {
        if (sem_timedwait(&h->slots, &ts) == 0)
            return SB_OK;
        if (errno == EINTR)
            continue;
        if (errno == ETIMEDOUT) {
            if (caller_deadline) {
                sb_buf_adds(err, "deadline exceeded while waiting to check the password");
                return SB_DEADLINE_EXCEEDED;
            }
            sb_warn("password hashing: no free slot within %d ms", SLOT_WAIT_MAX_MS);
            sb_buf_adds(err, "too many sign-ins in progress; try again shortly");
            return SB_RESOURCE_EXHAUSTED;
        }
        sb_error("password hashing: sem_timedwait: %s", strerror(errno));
        sb_buf_adds(err, "password check failed");
        return SB_INTERNAL;
    }
}

static void slot_give(pw_hasher_t *h)
{
    sem_post(&h->slots);
}

pw_hasher_t *pw_hasher_new(sb_buf_t *err)
{
    pw_hasher_t *h = sb_calloc(1, sizeof *h);
    h->opslimit = (unsigned long long)sb_cfg_int("PWHASH_OPSLIMIT", crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                                 crypto_pwhash_OPSLIMIT_MIN, 64);
    h->memlimit = (size_t)sb_cfg_int("PWHASH_MEMLIMIT", crypto_pwhash_MEMLIMIT_INTERACTIVE,
                                     crypto_pwhash_MEMLIMIT_MIN, 4L * 1024 * 1024 * 1024);
    long slots = sb_cfg_int("PWHASH_CONCURRENCY", 2, 1, 256);
    if (sem_init(&h->slots, 0, (unsigned)slots) != 0) {
        sb_buf_addf(err, "password hashing: sem_init: %s", strerror(errno));
        free(h);
        return NULL;
    }
    /* The dummy's secret is random and forgotten: nothing ever matches it. */
    unsigned char secret[32];
    char secret_hex[2 * sizeof secret + 1];
    sb_random_bytes(secret, sizeof secret);
    sodium_bin2hex(secret_hex, sizeof secret_hex, secret, sizeof secret);
    int rc = crypto_pwhash_str(h->dummy, secret_hex, strlen(secret_hex), h->opslimit, h->memlimit);
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(secret_hex, sizeof secret_hex);
    if (rc != 0) {
        sb_buf_addf(err,
                    "password hashing: cannot hash with opslimit %llu, memlimit %zu bytes"
                    " (out of memory?)",
                    h->opslimit, h->memlimit);
        sem_destroy(&h->slots);
        free(h);
        return NULL;
    }
    sb_info("password hashing: Argon2id, opslimit %llu, memlimit %zu bytes, %ld at once", h->opslimit,
            h->memlimit, slots);
    return h;
}

void pw_hasher_free(pw_hasher_t *h)
{
    if (!h)
        return;
    sem_destroy(&h->slots);
    free(h);
}

sb_status_t pw_hash(pw_hasher_t *h, const char *password, char out[PW_HASH_MAX], int64_t deadline_ms,
                    sb_buf_t *err)
{
    sb_status_t st = slot_take(h, deadline_ms, err);
    if (st != SB_OK)
        return st;
    int rc = crypto_pwhash_str(out, password, strlen(password), h->opslimit, h->memlimit);
    slot_give(h);
    if (rc != 0) {
        sb_error("password hashing: crypto_pwhash_str failed (out of memory?)");
        sb_buf_adds(err, "password could not be processed; try again");
        return SB_INTERNAL;
    }
    return SB_OK;
}

sb_status_t pw_verify(pw_hasher_t *h, const char *hash, const char *password, bool *match,
                      int64_t deadline_ms, sb_buf_t *err)
{
    *match = false;
    sb_status_t st = slot_take(h, deadline_ms, err);
    if (st != SB_OK)
        return st;
    /* -1 means mismatch, a malformed hash or no memory: all "no match". */
    int rc = crypto_pwhash_str_verify(hash ? hash : h->dummy, password, strlen(password));
    slot_give(h);
    *match = hash != NULL && rc == 0;
    return SB_OK;
}

bool pw_needs_rehash(const pw_hasher_t *h, const char *hash)
{
    return crypto_pwhash_str_needs_rehash(hash, h->opslimit, h->memlimit) == 1;
}
