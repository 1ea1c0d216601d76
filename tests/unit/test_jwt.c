/* Access-token verification: signature, pinned algorithm, claims. */
#include <criterion/criterion.h>
#include <jwt.h>
#include <stdlib.h>
#include <string.h>

#include "sb/jwt.h"

static const int64_t now = 1795510800;

/* ---- ES256: keys generated here (OpenSSL API) into a temporary directory ---- */

#include <dirent.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static char keydir[64];

static void write_pem(const char *dir, const char *name, EVP_PKEY *pk, bool priv)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert(priv ? PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) : PEM_write_PUBKEY(f, pk));
    fclose(f);
    chmod(path, 0600);
}

/* A new P-256 key: <dir>/<kid>.key and <dir>/<kid>.pub.pem; caller frees with EVP_PKEY_free. */
static EVP_PKEY *new_key(const char *dir, const char *kid)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    cr_assert_not_null(pk);
    char name[128];
    snprintf(name, sizeof name, "%s.key", kid);
    write_pem(dir, name, pk, true);
    snprintf(name, sizeof name, "%s.pub.pem", kid);
    write_pem(dir, name, pk, false);
    return pk;
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
    rmdir(dir);
}

static EVP_PKEY *key_a, *key_b;

static void es_setup(void)
{
    strcpy(keydir, "/tmp/sb-jwt-XXXXXX");
    cr_assert_not_null(mkdtemp(keydir));
    key_a = new_key(keydir, "k20261202-aaaa");
    key_b = new_key(keydir, "k20261202-bbbb");
}

static void es_teardown(void)
{
    EVP_PKEY_free(key_a);
    EVP_PKEY_free(key_b);
    rm_dir(keydir);
}

static sb_jwt_signer_t *signer(const char *dir, const char *kid)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s.key", dir, kid);
    sb_buf_t err = SB_BUF_INIT;
    sb_jwt_signer_t *s = sb_jwt_signer_load(path, &err);
    cr_assert_not_null(s, "%s", err.buf);
    sb_buf_release(&err);
    return s;
}

static sb_jwt_keyset_t *keyset(const char *dir)
{
    sb_buf_t err = SB_BUF_INIT;
    sb_jwt_keyset_t *ks = sb_jwt_keyset_load(dir, &err);
    cr_assert_not_null(ks, "%s", err.buf);
    sb_buf_release(&err);
    return ks;
}

static char *issue_es(const sb_jwt_signer_t *s, int64_t iat, int64_t exp)
{
    sb_jwt_claims_t c = {.iat = iat, .exp = exp};
    strcpy(c.sub, "user-1");
    strcpy(c.role, "PLANNER");
    strcpy(c.jti, "jti-1");
    char *t;
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(sb_jwt_issue_es256(s, &c, &t, &err), SB_OK, "%s", err.buf);
    sb_buf_release(&err);
    return t;
}

static sb_status_t verify_es(sb_jwt_keyset_t *ks, const char *t, sb_jwt_claims_t *c, sb_buf_t *err)
{
    sb_buf_reset(err);
    return sb_jwt_verify_es256(ks, t, now, c, err);
}

/* Signs a token by hand with libjwt: any alg, any key, header kid and claims. */
static char *forge(jwt_alg_t alg, const void *key, size_t key_len, const char *kid, const char *aud)
{
    jwt_t *j;
    jwt_new(&j);
    if (kid)
        jwt_add_header(j, "kid", kid);
    jwt_add_grant(j, "iss", SB_JWT_ISSUER);
    if (aud)
        jwt_add_grant(j, "aud", aud);
    jwt_add_grant(j, "sub", "attacker");
    jwt_add_grant(j, "role", "ADMIN");
    jwt_add_grant(j, "jti", "j");
    jwt_add_grant_int(j, "iat", (long)now);
    jwt_add_grant_int(j, "exp", (long)now + 900);
    cr_assert_eq(jwt_set_alg(j, alg, key, (int)key_len), 0);
    char *t = jwt_encode_str(j);
    jwt_free(j);
    cr_assert_not_null(t);
    return t;
}

static char *read_file(const char *dir, const char *name, size_t *len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    char *buf = calloc(1, 8192);
    *len = fread(buf, 1, 8191, f);
    fclose(f);
    return buf;
}

TestSuite(jwt_es256, .init = es_setup, .fini = es_teardown);

Test(jwt_es256, round_trip_with_kid)
{
    sb_jwt_signer_t *s = signer(keydir, "k20261202-bbbb");
    sb_jwt_keyset_t *ks = keyset(keydir);
    cr_assert_eq(sb_jwt_keyset_count(ks), 2);
    cr_assert_str_eq(sb_jwt_signer_kid(s), "k20261202-bbbb");
    char *t = issue_es(s, now - 10, now + 900);
    sb_jwt_claims_t c;
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(c.sub, "user-1");
    cr_assert_str_eq(c.role, "PLANNER");
    cr_assert_str_eq(c.jti, "jti-1");
    cr_assert_eq(c.exp, now + 900);
    cr_assert_eq(c.iat, now - 10);
    /* the header names the key and the algorithm; the signature is JOSE's 64-byte R||S */
    jwt_t *j;
    size_t plen;
    char *pub = read_file(keydir, "k20261202-bbbb.pub.pem", &plen);
    cr_assert_eq(jwt_decode(&j, t, (unsigned char *)pub, (int)plen), 0);
    cr_assert_str_eq(jwt_get_header(j, "kid"), "k20261202-bbbb");
    cr_assert_eq(jwt_get_alg(j), JWT_ALG_ES256);
    cr_assert_str_eq(jwt_get_grant(j, "aud"), SB_JWT_AUDIENCE);
    jwt_free(j);
    size_t sig = strlen(strrchr(t, '.') + 1);
    cr_assert_eq(sig, 86, "signature of %zu base64url chars", sig); /* 64 bytes */
    free(pub);
    free(t);
    sb_buf_release(&err);
    sb_jwt_keyset_free(ks);
    sb_jwt_signer_free(s);
}

Test(jwt_es256, wrong_and_unknown_kid_are_refused)
{
    sb_jwt_keyset_t *ks = keyset(keydir);
    sb_jwt_claims_t c;
    sb_buf_t err = SB_BUF_INIT;
    /* key a's private key under key b's kid: the signature does not verify with b */
    char other[64];
    strcpy(other, "/tmp/sb-jwt-XXXXXX");
    cr_assert_not_null(mkdtemp(other));
    write_pem(other, "k20261202-bbbb.key", key_a, true);
    sb_jwt_signer_t *s = signer(other, "k20261202-bbbb");
    char *t = issue_es(s, now, now + 900);
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, "invalid token signature");
    cr_assert_str_eq(c.sub, "");
    free(t);
    sb_jwt_signer_free(s);
    /* a kid the set does not have */
    EVP_PKEY *k = new_key(other, "k20261203-cccc");
    s = signer(other, "k20261203-cccc");
    t = issue_es(s, now, now + 900);
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, "token key id unknown");
    free(t);
    sb_jwt_signer_free(s);
    EVP_PKEY_free(k);
    rm_dir(other);
    sb_buf_release(&err);
    sb_jwt_keyset_free(ks);
}

Test(jwt_es256, rotation_reload_picks_up_and_drops_keys)
{
    sb_jwt_keyset_t *ks = keyset(keydir);
    sb_jwt_claims_t c;
    sb_buf_t err = SB_BUF_INIT;
    /* a key published after the set was loaded: unknown until a reload */
    EVP_PKEY *k = new_key(keydir, "k20261203-dddd");
    sb_jwt_signer_t *s = signer(keydir, "k20261203-dddd");
    char *t = issue_es(s, now, now + 900);
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_UNAUTHENTICATED); /* reload not due yet */
    cr_assert_str_eq(err.buf, "token key id unknown");
    cr_assert_eq(sb_jwt_keyset_reload(ks, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(sb_jwt_keyset_count(ks), 3);
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_OK, "%s", err.buf);
    /* the public key removed: refused after the next reload */
    char path[256];
    snprintf(path, sizeof path, "%s/k20261203-dddd.pub.pem", keydir);
    unlink(path);
    cr_assert_eq(sb_jwt_keyset_reload(ks, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_UNAUTHENTICATED);
    /* published again, with reloads on an unknown kid allowed at once */
    write_pem(keydir, "k20261203-dddd.pub.pem", k, false);
    sb_jwt_keyset_set_reload_interval(ks, 0);
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_OK, "%s", err.buf);
    /* a reload that fails keeps the set in force */
    snprintf(path, sizeof path, "%s/k20261204-bad.pub.pem", keydir);
    FILE *f = fopen(path, "w");
    fputs("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n", f);
    fclose(f);
    sb_buf_reset(&err);
    cr_assert_neq(sb_jwt_keyset_reload(ks, &err), SB_OK);
    cr_assert(strstr(err.buf, "k20261204-bad.pub.pem"), "%s", err.buf);
    cr_assert_eq(sb_jwt_keyset_count(ks), 3);
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_OK, "%s", err.buf);
    unlink(path);
    free(t);
    sb_jwt_signer_free(s);
    EVP_PKEY_free(k);
    sb_buf_release(&err);
    sb_jwt_keyset_free(ks);
}

Test(jwt_es256, tampered_payload_is_refused)
{
    sb_jwt_signer_t *s = signer(keydir, "k20261202-aaaa");
    sb_jwt_keyset_t *ks = keyset(keydir);
    char *t = issue_es(s, now, now + 900);
    sb_jwt_claims_t c;
    sb_buf_t err = SB_BUF_INIT;
    char *dot = strchr(t, '.'), was = dot[5];
    dot[5] = was == 'A' ? 'B' : 'A';
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(c.sub, "");
    /* and a flipped signature byte */
    dot[5] = was;
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_OK, "%s", err.buf);
    char *sig = strrchr(t, '.') + 1;
    /* the same signature bytes spelt another way (the last character's 4
     * unused bits set): refused, one token has one spelling */
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char last = sig[85];
    int v = (int)(strchr(tab, last) - tab);
    cr_assert_eq(v & 15, 0, "a canonical encoding leaves the unused bits clear");
    sig[85] = tab[v | 1];
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_UNAUTHENTICATED);
    sig[85] = last;
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_OK, "%s", err.buf);
    sig[10] = sig[10] == 'A' ? 'B' : 'A';
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_UNAUTHENTICATED);
    free(t);
    sb_buf_release(&err);
    sb_jwt_keyset_free(ks);
    sb_jwt_signer_free(s);
}

Test(jwt_es256, other_algorithms_are_refused)
{
    sb_jwt_keyset_t *ks = keyset(keydir);
    sb_jwt_claims_t c;
    sb_buf_t err = SB_BUF_INIT;
    /* alg none, with a kid of the set */
    char *t = forge(JWT_ALG_NONE, NULL, 0, "k20261202-aaaa", SB_JWT_AUDIENCE);
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_UNAUTHENTICATED, "alg none accepted!");
    cr_assert_str_eq(err.buf, "token algorithm not accepted");
    free(t);
    /* key confusion: HS256 with the PEM public key (public knowledge) as the
     * HMAC secret. libjwt alone, handed that key, accepts it: */
    size_t plen;
    char *pub = read_file(keydir, "k20261202-aaaa.pub.pem", &plen);
    t = forge(JWT_ALG_HS256, pub, plen, "k20261202-aaaa", SB_JWT_AUDIENCE);
    jwt_t *j = NULL;
    cr_assert_eq(jwt_decode(&j, t, (unsigned char *)pub, (int)plen), 0,
                 "the attack needs libjwt to accept it");
    jwt_free(j);
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_UNAUTHENTICATED, "HS256 key confusion accepted!");
    cr_assert_str_eq(err.buf, "token algorithm not accepted");
    cr_assert_str_eq(c.sub, "");
    free(t);
    /* and without the trailing newline of the PEM file */
    t = forge(JWT_ALG_HS256, pub, plen - 1, "k20261202-aaaa", SB_JWT_AUDIENCE);
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_UNAUTHENTICATED);
    free(t);
    free(pub);
    /* RS256 with an RSA key (its public half could be published under the kid) */
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    cr_assert_not_null(rsa);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, rsa, NULL, NULL, 0, NULL, NULL);
    char *pem;
    long n = BIO_get_mem_data(bio, &pem);
    t = forge(JWT_ALG_RS256, pem, (size_t)n, "k20261202-aaaa", SB_JWT_AUDIENCE);
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, "token algorithm not accepted");
    free(t);
    BIO_free(bio);
    EVP_PKEY_free(rsa);
    /* ES256 without a kid */
    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, key_a, NULL, NULL, 0, NULL, NULL);
    n = BIO_get_mem_data(bio, &pem);
    t = forge(JWT_ALG_ES256, pem, (size_t)n, NULL, SB_JWT_AUDIENCE);
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, "token without a valid kid");
    free(t);
    /* the same key and kid, correctly signed: accepted (the forge helper is sound) */
    t = forge(JWT_ALG_ES256, pem, (size_t)n, "k20261202-aaaa", SB_JWT_AUDIENCE);
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_OK, "%s", err.buf);
    cr_assert_str_eq(c.role, "ADMIN");
    free(t);
    BIO_free(bio);
    sb_buf_release(&err);
    sb_jwt_keyset_free(ks);
}

Test(jwt_es256, wrong_audience_and_expiry_are_refused)
{
    sb_jwt_keyset_t *ks = keyset(keydir);
    sb_jwt_claims_t c;
    sb_buf_t err = SB_BUF_INIT;
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, key_a, NULL, NULL, 0, NULL, NULL);
    char *pem;
    long n = BIO_get_mem_data(bio, &pem);
    char *t = forge(JWT_ALG_ES256, pem, (size_t)n, "k20261202-aaaa", "another-platform");
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, "token audience not accepted");
    free(t);
    t = forge(JWT_ALG_ES256, pem, (size_t)n, "k20261202-aaaa", NULL);
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, "token audience not accepted");
    free(t);
    BIO_free(bio);
    /* expired, and issued in the future */
    sb_jwt_signer_t *s = signer(keydir, "k20261202-aaaa");
    t = issue_es(s, now - 1000, now - 1);
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_UNAUTHENTICATED);
    cr_assert_str_eq(err.buf, "token expired");
    free(t);
    t = issue_es(s, now + 3600, now + 7200);
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_UNAUTHENTICATED);
    free(t);
    sb_jwt_signer_free(s);
    sb_buf_release(&err);
    sb_jwt_keyset_free(ks);
}

Test(jwt_es256, duplicate_claims_are_refused)
{
    /* {"role":"USER",...,"role":"ADMIN"}: parsers disagree on which wins */
    sb_jwt_keyset_t *ks = keyset(keydir);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, key_a, NULL, NULL, 0, NULL, NULL);
    char *pem;
    long n = BIO_get_mem_data(bio, &pem);
    jwt_t *j;
    jwt_new(&j);
    jwt_add_header(j, "kid", "k20261202-aaaa");
    cr_assert_eq(jwt_add_grants_json(j, "{\"iss\":\"" SB_JWT_ISSUER "\",\"aud\":\"" SB_JWT_AUDIENCE
                                        "\",\"sub\":\"u\",\"role\":\"USER\",\"jti\":\"j\","
                                        "\"iat\":1795510800,\"exp\":1795511700}"),
                 0);
    jwt_set_alg(j, JWT_ALG_ES256, (unsigned char *)pem, (int)n);
    char *t = jwt_encode_str(j);
    jwt_free(j);
    sb_jwt_claims_t c;
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(verify_es(ks, t, &c, &err), SB_OK, "%s", err.buf); /* the helper is sound */
    free(t);
    /* the same claims with role twice, signed by hand */
    const char *hdr = "{\"alg\":\"ES256\",\"kid\":\"k20261202-aaaa\"}";
    const char *body = "{\"iss\":\"" SB_JWT_ISSUER "\",\"aud\":\"" SB_JWT_AUDIENCE
                       "\",\"sub\":\"u\",\"role\":\"USER\",\"jti\":\"j\",\"iat\":1795510800,"
                       "\"exp\":1795511700,\"role\":\"ADMIN\"}";
    unsigned char b64h[256], b64b[512];
    int hl = EVP_EncodeBlock(b64h, (const unsigned char *)hdr, (int)strlen(hdr));
    int bl = EVP_EncodeBlock(b64b, (const unsigned char *)body, (int)strlen(body));
    sb_buf_t tok = SB_BUF_INIT;
    for (int i = 0; i < hl; i++)
        if (b64h[i] != '=')
            sb_buf_addch(&tok, b64h[i] == '+' ? '-' : b64h[i] == '/' ? '_' : (char)b64h[i]);
    sb_buf_addch(&tok, '.');
    for (int i = 0; i < bl; i++)
        if (b64b[i] != '=')
            sb_buf_addch(&tok, b64b[i] == '+' ? '-' : b64b[i] == '/' ? '_' : (char)b64b[i]);
    /* ES256 over the signing input, R || S */
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[128];
    size_t dlen = sizeof der;
    cr_assert(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key_a) == 1 &&
              EVP_DigestSign(md, der, &dlen, (unsigned char *)tok.buf, tok.len) == 1);
    EVP_MD_CTX_free(md);
    const unsigned char *dp = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &dp, (long)dlen);
    unsigned char rs[64];
    BN_bn2binpad(ECDSA_SIG_get0_r(sig), rs, 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(sig), rs + 32, 32);
    ECDSA_SIG_free(sig);
    unsigned char b64s[100];
    int sl = EVP_EncodeBlock(b64s, rs, 64);
    sb_buf_addch(&tok, '.');
    for (int i = 0; i < sl; i++)
        if (b64s[i] != '=')
            sb_buf_addch(&tok, b64s[i] == '+' ? '-' : b64s[i] == '/' ? '_' : (char)b64s[i]);
    cr_assert_eq(verify_es(ks, tok.buf, &c, &err), SB_UNAUTHENTICATED, "duplicate role accepted as %s",
                 c.role);
    /* refused for its claims, so its signature did verify: the test is sound */
    cr_assert_str_eq(err.buf, "malformed token claims");
    sb_buf_release(&tok);
    BIO_free(bio);
    sb_buf_release(&err);
    sb_jwt_keyset_free(ks);
}

Test(jwt_es256, garbage_is_refused)
{
    sb_jwt_keyset_t *ks = keyset(keydir);
    sb_jwt_claims_t c;
    sb_buf_t err = SB_BUF_INIT;
    const char *bad[] = {
        "",
        "a.b",
        "a.b.c.d",
        "a.b.c",
        "....",
        "eyJ.eyJ.@@@",
        /* {"alg":"ES256","kid":"k20261202-aaaa","crit":["exp"]} */
        "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsyMDI2MTIwMi1hYWFhIiwiY3JpdCI6WyJleHAiXX0.e30.AAAA",
        /* {"alg":"ES256","kid":"../../etc/passwd"} */
        "eyJhbGciOiJFUzI1NiIsImtpZCI6Ii4uLy4uL2V0Yy9wYXNzd2QifQ.e30.AAAA",
        /* {"alg":"ES256","kid":"k20261202-aaaa"} with a signature of garbage */
        "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsyMDI2MTIwMi1hYWFhIn0.e30.AAAA",
        /* [1,2] */
        "WzEsMl0.e30.AAAA",
        /* {"alg":"ES256","kid":"k20261202-aaaa"} with an empty signature */
        "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsyMDI2MTIwMi1hYWFhIn0.e30.",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(verify_es(ks, bad[i], &c, &err), SB_UNAUTHENTICATED, "%s accepted", bad[i]);
    sb_buf_release(&err);
    sb_jwt_keyset_free(ks);
}

/* base64url -> bytes (test's own decoder, not the one under test) */
static size_t unb64url(const char *in, unsigned char *out)
{
    char b64[128];
    size_t n = strlen(in);
    cr_assert_lt(n, 120);
    for (size_t i = 0; i < n; i++)
        b64[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
    while (n % 4)
        b64[n++] = '=';
    b64[n] = 0;
    int len = EVP_DecodeBlock(out, (unsigned char *)b64, (int)n);
    cr_assert_gt(len, 0);
    return (size_t)len - (b64[n - 1] == '=') - (b64[n - 2] == '=');
}

Test(jwt_es256, jwks_publishes_the_public_points)
{
    sb_jwt_keyset_t *ks = keyset(keydir);
    sb_buf_t out = SB_BUF_INIT;
    sb_jwt_keyset_jwks(ks, &out);
    json_t *doc = json_loads(out.buf, 0, NULL);
    cr_assert_not_null(doc, "%s", out.buf);
    json_t *keys = json_object_get(doc, "keys");
    cr_assert_eq(json_array_size(keys), 2, "%s", out.buf);
    EVP_PKEY *want[] = {key_a, key_b};
    const char *kids[] = {"k20261202-aaaa", "k20261202-bbbb"};
    for (size_t i = 0; i < 2; i++) {
        json_t *k = json_array_get(keys, i);
        cr_assert_str_eq(json_string_value(json_object_get(k, "kid")), kids[i]);
        cr_assert_str_eq(json_string_value(json_object_get(k, "kty")), "EC");
        cr_assert_str_eq(json_string_value(json_object_get(k, "crv")), "P-256");
        cr_assert_str_eq(json_string_value(json_object_get(k, "alg")), "ES256");
        cr_assert_str_eq(json_string_value(json_object_get(k, "use")), "sig");
        /* 0x04 || x || y must be the key's uncompressed public point */
        unsigned char pt[65], x[40], y[40];
        size_t ptlen = 0;
        cr_assert(EVP_PKEY_get_octet_string_param(want[i], OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
                                                  sizeof pt, &ptlen));
        cr_assert_eq(ptlen, 65);
        cr_assert_eq(unb64url(json_string_value(json_object_get(k, "x")), x), 32);
        cr_assert_eq(unb64url(json_string_value(json_object_get(k, "y")), y), 32);
        cr_assert_eq(memcmp(pt + 1, x, 32), 0, "x of %s", kids[i]);
        cr_assert_eq(memcmp(pt + 33, y, 32), 0, "y of %s", kids[i]);
    }
    json_decref(doc);
    sb_buf_release(&out);
    sb_jwt_keyset_free(ks);
}

Test(jwt_es256, bad_keys_are_refused_at_load)
{
    sb_buf_t err = SB_BUF_INIT;
    char other[64];
    strcpy(other, "/tmp/sb-jwt-XXXXXX");
    cr_assert_not_null(mkdtemp(other));
    /* no public key at all */
    cr_assert_null(sb_jwt_keyset_load(other, &err));
    cr_assert_null(sb_jwt_keyset_load("/nonexistent/dir", &err));
    /* a P-384 key is not an ES256 key, for signing or verifying */
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    write_pem(other, "k384.key", p384, true);
    write_pem(other, "k384.pub.pem", p384, false);
    char path[256];
    snprintf(path, sizeof path, "%s/k384.key", other);
    sb_buf_reset(&err);
    cr_assert_null(sb_jwt_signer_load(path, &err));
    cr_assert(strstr(err.buf, "P-256"), "%s", err.buf);
    sb_buf_reset(&err);
    cr_assert_null(sb_jwt_keyset_load(other, &err));
    cr_assert(strstr(err.buf, "P-256"), "%s", err.buf);
    EVP_PKEY_free(p384);
    /* a file not named <kid>.key */
    write_pem(other, "signing.pem", key_a, true);
    snprintf(path, sizeof path, "%s/signing.pem", other);
    cr_assert_null(sb_jwt_signer_load(path, &err));
    /* a public key where the private one should be */
    write_pem(other, "kpub.key", key_a, false);
    snprintf(path, sizeof path, "%s/kpub.key", other);
    cr_assert_null(sb_jwt_signer_load(path, &err));
    rm_dir(other);
    sb_buf_release(&err);
}

/* A token with claims as given (JSON), signed with key a. */
static char *sign_claims(const char *claims)
{
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, key_a, NULL, NULL, 0, NULL, NULL);
    char *pem;
    long n = BIO_get_mem_data(bio, &pem);
    jwt_t *j;
    jwt_new(&j);
    jwt_add_header(j, "kid", "k20261202-aaaa");
    cr_assert_eq(jwt_add_grants_json(j, claims), 0);
    jwt_set_alg(j, JWT_ALG_ES256, (unsigned char *)pem, (int)n);
    char *t = jwt_encode_str(j);
    jwt_free(j);
    BIO_free(bio);
    return t;
}

/* iat_ms: the issue time in ms that a password change's revocation compares
 * (sb/authn.h); iat * 1000 for a token without it; refused when it is not
 * within iat's second. */
Test(jwt_es256, issue_time_in_milliseconds)
{
    sb_jwt_signer_t *s = signer(keydir, "k20261202-aaaa");
    sb_jwt_keyset_t *ks = keyset(keydir);
    sb_jwt_claims_t c = {.iat = now, .iat_ms = now * 1000 + 123, .exp = now + 900};
    strcpy(c.sub, "u");
    strcpy(c.role, "USER");
    strcpy(c.jti, "j");
    char *t;
    sb_buf_t err = SB_BUF_INIT;
    cr_assert_eq(sb_jwt_issue_es256(s, &c, &t, &err), SB_OK, "%s", err.buf);
    sb_jwt_claims_t out;
    cr_assert_eq(verify_es(ks, t, &out, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(out.iat_ms, now * 1000 + 123);
    free(t);
    t = issue_es(s, now - 10, now + 900); /* iat_ms 0 when issued: iat * 1000 */
    cr_assert_eq(verify_es(ks, t, &out, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(out.iat_ms, (now - 10) * 1000);
    free(t);

#define CLAIMS(extra)                                                                                   \
    "{\"iss\":\"" SB_JWT_ISSUER "\",\"aud\":\"" SB_JWT_AUDIENCE "\",\"sub\":\"u\",\"role\":\"USER\","   \
    "\"jti\":\"j\",\"iat\":1795510800,\"exp\":1795511700" extra "}"
    t = sign_claims(CLAIMS(""));
    cr_assert_eq(verify_es(ks, t, &out, &err), SB_OK, "%s", err.buf);
    cr_assert_eq(out.iat_ms, 1795510800000LL, "a token without iat_ms: iat * 1000");
    free(t);
    static const char *const bad[] = {
        CLAIMS(",\"iat_ms\":1795510799999"), CLAIMS(",\"iat_ms\":1795510801000"),
        CLAIMS(",\"iat_ms\":\"1795510800500\""), CLAIMS(",\"iat_ms\":1795510800.5")};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = sign_claims(bad[i]);
        cr_assert_eq(verify_es(ks, t, &out, &err), SB_UNAUTHENTICATED, "%s accepted", bad[i]);
        cr_assert_str_eq(err.buf, "token issue times disagree");
        free(t);
    }
#undef CLAIMS
    sb_jwt_signer_free(s);
    sb_buf_release(&err);
    sb_jwt_keyset_free(ks);
}
