/* The pure checks of the payment service, unit-tested as they are
 * (tests/unit/test_payment_signature.c): a provider webhook's signature and
 * a card number's shape. */
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payment.h"

#define SIG_HEX 64 /* hex digits of an HMAC-SHA256 */
#define HEADER_MAX 1024

sb_status_t pay_webhook_verify(const char *header, const uint8_t *body, size_t len, const char *secret,
                               int64_t now, int tolerance_s, sb_buf_t *why)
{
    if (!header || !*header || strlen(header) > HEADER_MAX) {
        sb_buf_adds(why, "webhook refused: no Provider-Signature header");
        return SB_UNAUTHENTICATED;
    }
    /* t=<digits> and every v1=<64 hex>, comma separated, in any order */
    long long t = -1;
    const char *v1[8];
    size_t n_v1 = 0;
    for (const char *p = header; *p;) {
        const char *end = strchr(p, ',');
        size_t l = end ? (size_t)(end - p) : strlen(p);
        if (l > 2 && !strncmp(p, "t=", 2)) {
            char *stop;
            t = strtoll(p + 2, &stop, 10);
            if (stop != p + l || t < 0)
                t = -1;
        } else if (l == 3 + SIG_HEX && !strncmp(p, "v1=", 3) && n_v1 < sizeof v1 / sizeof v1[0]) {
            v1[n_v1++] = p + 3;
        }
        p += l + (end ? 1 : 0);
    }
    if (t < 0 || n_v1 == 0) {
        sb_buf_adds(why, "webhook refused: Provider-Signature must be t=<unix time>,v1=<hex signature>");
        return SB_UNAUTHENTICATED;
    }
    /* HMAC-SHA256(secret, "<t>." body) */
    char prefix[32];
    int pl = snprintf(prefix, sizeof prefix, "%lld.", t);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    sb_buf_t msg = SB_BUF_INIT;
    sb_buf_add(&msg, prefix, (size_t)pl);
    sb_buf_add(&msg, body, len);
    bool ok = HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg.buf, msg.len,
                   mac, &mac_len) != NULL &&
              mac_len * 2 == SIG_HEX;
    sb_buf_release(&msg);
    if (!ok) {
        sb_buf_adds(why, "webhook refused: signature could not be computed");
        return SB_UNAUTHENTICATED;
    }
    static const char digits[] = "0123456789abcdef";
    char expect[SIG_HEX];
    for (unsigned i = 0; i < mac_len; i++) {
        expect[2 * i] = digits[mac[i] >> 4];
        expect[2 * i + 1] = digits[mac[i] & 15];
    }
    int match = 0;
    for (size_t i = 0; i < n_v1; i++) {
        char given[SIG_HEX];
        for (int k = 0; k < SIG_HEX; k++) /* lower case, without branching on the bytes */
            given[k] = (char)(v1[i][k] | ((v1[i][k] >= 'A' && v1[i][k] <= 'F') ? 0x20 : 0));
        match |= CRYPTO_memcmp(given, expect, SIG_HEX) == 0;
    }
    if (!match) {
        sb_buf_adds(why, "webhook refused: signature does not match");
        return SB_UNAUTHENTICATED;
    }
    if (t < now - tolerance_s || t > now + tolerance_s) {
        sb_buf_addf(why, "webhook refused: signature timestamp %lld is more than %d s from now", t,
                    tolerance_s);
        return SB_UNAUTHENTICATED;
    }
    return SB_OK;
}

bool pay_card_valid(const char *s)
{
    if (!s || strlen(s) != 16)
        return false;
    int sum = 0;
    for (int i = 15, k = 0; i >= 0; i--, k++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        int d = s[i] - '0';
        if (k % 2 == 1 && (d *= 2) > 9)
            d -= 9;
        sum += d;
    }
    return sum % 10 == 0;
}
