/* Access-token verification on hostile input, both schemes:
 * - HS256: anything but a token signed with the secret, HS256 in its header,
 *   the right issuer and live claims must be refused without crashing;
 * - ES256: the same against a keyset of one public key (kid "kfuzz", written
 *   to a temporary directory on the first input). The corpus holds a token
 *   validly signed by that key (its private half was thrown away), so the
 *   fuzzer starts from the accepting path; alg none, HS256 keyed with the
 *   public key (key confusion) and an unknown kid start from refusals. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "sb/jwt.h"
#include "sb/log.h"

static const char fuzz_pub[] = "-----BEGIN PUBLIC KEY-----\n"
                               "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEGnuEZ26+5dHxSlcwuRGyA7g0sUJo\n"
                               "JPsxlrpbJAqz2VSQL21CIwmZa0zJ7zoqK5wnbbSaiyoKN8UD2aX2A4dC+Q==\n"
                               "-----END PUBLIC KEY-----\n";
static char key_dir[64], key_file[96];
static sb_jwt_keyset_t *keyset;

static void cleanup(void)
{
    sb_jwt_keyset_free(keyset);
    unlink(key_file);
    rmdir(key_dir);
}

static sb_jwt_keyset_t *fuzz_keyset(void)
{
    if (keyset)
        return keyset;
    strcpy(key_dir, "/tmp/sb-fuzz-jwt-XXXXXX");
    if (!mkdtemp(key_dir))
        abort();
    snprintf(key_file, sizeof key_file, "%s/kfuzz.pub.pem", key_dir);
    FILE *f = fopen(key_file, "w");
    if (!f || fputs(fuzz_pub, f) < 0 || fclose(f) != 0)
        abort();
    sb_buf_t err = SB_BUF_INIT;
    keyset = sb_jwt_keyset_load(key_dir, &err);
    if (!keyset) {
        fprintf(stderr, "fuzz_jwt: %s\n", err.buf);
        abort();
    }
    sb_buf_release(&err);
    atexit(cleanup);
    return keyset;
}

static bool claims_complete(const sb_jwt_claims_t *c, int64_t now)
{
    return c->sub[0] && c->jti[0] && c->role[0] && c->exp > now;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet++)
        sb_log_set_level(SB_LOG_ERROR);
    const int64_t now = 1800000000;
    char tok[SB_JWT_MAX_TOKEN + 1];
    if (size > SB_JWT_MAX_TOKEN)
        size = SB_JWT_MAX_TOKEN;
    memcpy(tok, data, size);
    tok[size] = '\0';
    sb_jwt_claims_t c;
    sb_buf_t err = SB_BUF_INIT;
    if (sb_jwt_verify_es256(fuzz_keyset(), tok, now, &c, &err) == SB_OK && !claims_complete(&c, now))
        __builtin_trap(); /* accepted a token without the claims it must carry */
    sb_buf_release(&err);
    return 0;
}
