/* The payment service's pure checks (services/payment/signature.c): a
 * provider webhook's Provider-Signature (HMAC-SHA256 of "<t>.<body>") and
 * its age, and card numbers (16 digits, Luhn). The expected signatures were
 * computed with Python's hmac module. */
#include <criterion/criterion.h>
#include <string.h>

#include "payment.h"

#define SECRET "sb-dev-webhook-secret"
#define BODY "{\"id\":\"evt_1\",\"type\":\"payment.succeeded\"}"
#define T 1700000000
/* hmac.new(b"sb-dev-webhook-secret", b"1700000000." + BODY, sha256).hexdigest() */
#define SIG "4cd2ecd1afe66560fe20fa8da42d89840093337cc72511b09254bc72820bd53c"

static sb_status_t verify(const char *header, const char *body, long long now, sb_buf_t *why)
{
    sb_buf_reset(why);
    return pay_webhook_verify(header, (const uint8_t *)body, strlen(body), SECRET, now, 300, why);
}

Test(payment_signature, valid_and_refused)
{
    sb_buf_t why = SB_BUF_INIT;
    static const struct {
        const char *header, *body;
        long long now;
        sb_status_t want;
        const char *words;
    } cases[] = {
        {"t=1700000000,v1=" SIG, BODY, T, SB_OK, ""},
        {"v1=" SIG ",t=1700000000", BODY, T + 300, SB_OK, ""},                /* any order, 300 s old */
        {"t=1700000000,v1=00,v1=" SIG, BODY, T, SB_OK, ""},                   /* a short v1 is skipped */
        {"t=1700000000,v1=" SIG, BODY, T + 301, SB_UNAUTHENTICATED, "300 s"}, /* too old */
        {"t=1700000000,v1=" SIG, BODY, T - 301, SB_UNAUTHENTICATED, "300 s"}, /* from the future */
        {"t=1700000001,v1=" SIG, BODY, T, SB_UNAUTHENTICATED, "does not match"},
        {"t=1700000000,v1=" SIG, BODY " ", T, SB_UNAUTHENTICATED, "does not match"},
        {"t=1700000000", BODY, T, SB_UNAUTHENTICATED, "t=<unix time>"},
        {"v1=" SIG, BODY, T, SB_UNAUTHENTICATED, "t=<unix time>"},
        {"t=x,v1=" SIG, BODY, T, SB_UNAUTHENTICATED, "t=<unix time>"},
        {"", BODY, T, SB_UNAUTHENTICATED, "no Provider-Signature"},
        {NULL, BODY, T, SB_UNAUTHENTICATED, "no Provider-Signature"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sb_status_t st = verify(cases[i].header, cases[i].body, cases[i].now, &why);
        cr_expect_eq(st, cases[i].want, "case %zu: %s (%s)", i, sb_status_name(st), why.buf);
        cr_expect(strstr(why.buf, cases[i].words) != NULL, "case %zu: %s", i, why.buf);
    }
    sb_buf_release(&why);
}

Test(payment_signature, upper_case_hex_accepted)
{
    char header[128] = "t=1700000000,v1=";
    size_t n = strlen(header);
    for (const char *p = SIG; *p; p++)
        header[n++] = (*p >= 'a' && *p <= 'f') ? (char)(*p - 0x20) : *p;
    header[n] = '\0';
    sb_buf_t why = SB_BUF_INIT;
    cr_expect_eq(verify(header, BODY, T, &why), SB_OK, "%s", why.buf);
    sb_buf_release(&why);
}

Test(payment_signature, cards)
{
    static const char *const good[] = {"4242424242424242", "4000000000000002", "4000000000000119",
                                       "4000000000000259", "5555555555554444", "4111111111111111"};
    static const char *const bad[] = {
        "4242424242424241", "424242424242424", "42424242424242420", "4242 4242 4242 42", "",
        "abcdabcdabcdabcd"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_expect(pay_card_valid(good[i]), "%s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect(!pay_card_valid(bad[i]), "%s", bad[i]);
    cr_expect(!pay_card_valid(NULL));
}
