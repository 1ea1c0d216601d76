/* Access-token verification on hostile input: anything but a token signed
 * with the secret, HS256 in its header, the right issuer and live claims must
 * be refused without crashing. */
#include <string.h>

#include "fuzz.h"
#include "sb/jwt.h"
#include "sb/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet++)
        sb_log_set_level(SB_LOG_ERROR);
    static const char secret[] = "fuzz-secret-0123456789abcdef0123456789abcdef";
    char tok[SB_JWT_MAX_TOKEN + 1];
    if (size > SB_JWT_MAX_TOKEN)
        size = SB_JWT_MAX_TOKEN;
    memcpy(tok, data, size);
    tok[size] = '\0';
    sb_jwt_claims_t c;
    sb_buf_t err = SB_BUF_INIT;
    if (sb_jwt_verify(secret, tok, 1800000000, &c, &err) == SB_OK &&
        (!c.sub[0] || !c.jti[0] || c.exp <= 1800000000))
        __builtin_trap(); /* accepted a token without the claims it must carry */
    sb_buf_release(&err);
    return 0;
}
