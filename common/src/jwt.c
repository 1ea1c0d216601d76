/* Access tokens: ES256 (signer, keyset, JWKS) and the previous HS256. See
 * sb/jwt.h for the verification rules.
 *
 * libjwt signs both and verifies HS256. ES256 signatures are verified here
 * with OpenSSL against the keys parsed once at load: libjwt 1.10 takes keys
 * as PEM text and parses them on every token, which made a verification cost
 * ~500 us instead of ~70 us. jansson reads the header (before any signature
 * work) and the ES256 claims; OpenSSL validates the keys (EC P-256 only) and
 * reads the public point for the JWKS document. */
#include "sb/jwt.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "sb/alloc.h"
#include "sb/config.h"
#include "sb/log.h"
#include "sb/util.h"

static sb_status_t deny(sb_buf_t *err, const char *why)
{
    sb_buf_adds(err, why);
    return SB_UNAUTHENTICATED;
}

static bool b64url_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* NULL when token is three base64url parts within SB_JWT_MAX_TOKEN; else why not. */
static const char *shape_error(const char *token)
{
    if (!token || !*token)
        return "missing token";
    if (strlen(token) > SB_JWT_MAX_TOKEN)
        return "token too long";
    int dots = 0;
    for (const char *p = token; *p; p++) {
        if (*p == '.')
            dots++;
        else if (!b64url_char(*p))
            return "malformed token";
    }
    return dots == 2 ? NULL : "malformed token";
}

#define HEADER_MAX 1024 /* decoded JOSE header */
#define SIG_HS256 43    /* base64url characters of a 32-byte HMAC */
#define SIG_ES256 86    /* of a 64-byte R||S */

static bool kid_valid(const char *kid, size_t n)
{
    if (n == 0 || n > SB_JWT_MAX_KID)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!b64url_char(kid[i]))
            return false;
    return true;
}

static int b64url_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

/* Decodes n base64url characters (unpadded) into out[cap]; the decoded
 * length, or -1 when malformed or too long. */
static long b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    if (n % 4 == 1)
        return -1;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (unsigned)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits & 0xff);
        }
    }
    if (acc & ((1u << bits) - 1)) /* non-canonical: leftover bits set */
        return -1;
    return (long)o;
}

/* Decodes and checks the JOSE header and the signature's length before any
 * signature work, so libjwt only ever verifies the pinned algorithm: "alg"
 * exactly `alg`, an optional "typ":"JWT", no "crit" (extensions we would
 * have to understand), a signature of sig_len base64url characters (libjwt
 * 1.10 overruns its buffer decoding an empty one), and, when kid is given, a
 * valid "kid" copied into it. NULL when acceptable, else why not. */
static const char *header_check(const char *token, const char *alg, size_t sig_len,
                                char kid[SB_JWT_MAX_KID + 1])
{
    const char *dot = strchr(token, '.');
    unsigned char raw[HEADER_MAX];
    long n = b64url_decode(token, (size_t)(dot - token), raw, sizeof raw);
    if (n <= 0)
        return "malformed token header";
    json_t *h = json_loadb((const char *)raw, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    const char *why = NULL;
    if (!json_is_object(h)) {
        why = "malformed token header";
        goto out;
    }
    const char *a = json_string_value(json_object_get(h, "alg"));
    if (!a || strcmp(a, alg) != 0) {
        why = "token algorithm not accepted";
        goto out;
    }
    json_t *typ = json_object_get(h, "typ");
    if (typ && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0)) {
        why = "token type not accepted";
        goto out;
    }
    if (json_object_get(h, "crit")) {
        why = "token header extensions not accepted";
        goto out;
    }
    if (kid) {
        json_t *k = json_object_get(h, "kid");
        const char *ks = json_string_value(k);
        if (!ks || !kid_valid(ks, json_string_length(k))) {
            why = "token without a valid kid";
            goto out;
        }
        memcpy(kid, ks, json_string_length(k) + 1);
    }
    if (strlen(strrchr(token, '.') + 1) != sig_len)
        why = "invalid token signature";
out:
    json_decref(h);
    return why;
}

static bool copy_claim(const json_t *g, const char *name, char *out, size_t n)
{
    const char *v = json_string_value(json_object_get(g, name));
    if (!v || !*v || strlen(v) >= n)
        return false;
    memcpy(out, v, strlen(v) + 1);
    return true;
}

static bool claim_is(const json_t *g, const char *name, const char *want)
{
    const char *v = json_string_value(json_object_get(g, name));
    return v && strcmp(v, want) == 0;
}

/* The claims (g, a JSON object) of a token whose signature and algorithm are
 * verified: iss, (aud when want_aud), exp, iat, sub, role, jti. */
static bool claims_ok(const json_t *g, int64_t now, bool want_aud, sb_jwt_claims_t *out, sb_buf_t *err)
{
    if (!claim_is(g, "iss", SB_JWT_ISSUER)) {
        sb_buf_adds(err, "token issuer not accepted");
        return false;
    }
    if (want_aud && !claim_is(g, "aud", SB_JWT_AUDIENCE)) {
        sb_buf_adds(err, "token audience not accepted");
        return false;
    }
    out->exp = (int64_t)json_integer_value(json_object_get(g, "exp")); /* 0 unless an integer */
    out->iat = (int64_t)json_integer_value(json_object_get(g, "iat"));
    if (out->exp <= 0 || out->iat <= 0) {
        sb_buf_adds(err, "token without exp/iat");
        return false;
    }
    if (now >= out->exp) {
        sb_buf_adds(err, "token expired");
        return false;
    }
    if (out->iat > now + 60) {
        sb_buf_adds(err, "token issued in the future");
        return false;
    }
    const json_t *ims = json_object_get(g, "iat_ms");
    out->iat_ms = out->iat * 1000;
    if (ims) {
        int64_t v = json_is_integer(ims) ? (int64_t)json_integer_value(ims) : -1;
        if (v < out->iat * 1000 || v > out->iat * 1000 + 999) {
            sb_buf_adds(err, "token issue times disagree");
            return false;
        }
        out->iat_ms = v;
    }
    if (!copy_claim(g, "sub", out->sub, sizeof out->sub) ||
        !copy_claim(g, "role", out->role, sizeof out->role) ||
        !copy_claim(g, "jti", out->jti, sizeof out->jti)) {
        sb_buf_adds(err, "token without sub/role/jti");
        return false;
    }
    if (strcmp(out->role, "USER") && strcmp(out->role, "PLANNER") && strcmp(out->role, "ADMIN")) {
        sb_buf_adds(err, "token role not accepted");
        return false;
    }
    return true;
}

/* ---- ES256: signer, keyset, JWKS ---- */

#define KEY_FILE_MAX 8192 /* a PEM EC key is ~250 bytes */

struct sb_jwt_signer {
    char kid[SB_JWT_MAX_KID + 1];
    char *pem; /* the private key as read, for libjwt */
    size_t pem_len;
};

struct jwt_key {
    char kid[SB_JWT_MAX_KID + 1];
    EVP_PKEY *pk;      /* parsed once: PEM parsing is most of libjwt's per-token cost */
    char x[48], y[48]; /* base64url of the 32-byte coordinates (43 chars) */
};

struct sb_jwt_keyset {
    char *dir;
    pthread_rwlock_t lock; /* guards keys, n */
    struct jwt_key *keys;  /* sorted by kid */
    size_t n;
    pthread_mutex_t reload_mu; /* guards last_reload_ms */
    int64_t last_reload_ms;
    int64_t reload_min_ms;
};

/* Appends the content of path (at most max bytes) to out. */
static bool read_small(const char *path, size_t max, sb_buf_t *out, sb_buf_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        sb_buf_addf(err, "cannot open %s: %s", path, strerror(errno));
        return false;
    }
    char chunk[1024];
    size_t n;
    bool ok = true;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + n > max) {
            sb_buf_addf(err, "%s is larger than %zu bytes", path, max);
            ok = false;
            break;
        }
        sb_buf_add(out, chunk, n);
    }
    if (ok && ferror(f)) {
        sb_buf_addf(err, "cannot read %s", path);
        ok = false;
    }
    fclose(f);
    return ok;
}

static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
        out[o++] = tab[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
    }
    out[o] = 0;
}

/* true when pk is an EC key on P-256. */
static bool is_p256(EVP_PKEY *pk)
{
    char group[64];
    size_t len = 0;
    return EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC &&
           EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) &&
           strcmp(group, SN_X9_62_prime256v1) == 0;
}

/* The kid of a file named <dir>/<kid><suffix>, into kid; false when the
 * name does not end in suffix or the rest is not a valid kid. */
static bool kid_of(const char *path, const char *suffix, char kid[SB_JWT_MAX_KID + 1])
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base), sn = strlen(suffix);
    if (n <= sn || strcmp(base + n - sn, suffix) != 0 || !kid_valid(base, n - sn))
        return false;
    memcpy(kid, base, n - sn);
    kid[n - sn] = 0;
    return true;
}

/* Reads the PEM file path into *pem (the caller releases it) and parses the
 * EC P-256 key in it, private or public; NULL, with err saying why, when
 * there is none. The caller frees the key with EVP_PKEY_free. */
static EVP_PKEY *read_p256(const char *path, bool private_key, sb_buf_t *pem, sb_buf_t *err)
{
    if (!read_small(path, KEY_FILE_MAX, pem, err))
        return NULL;
    BIO *bio = BIO_new_mem_buf(pem->buf, (int)pem->len);
    EVP_PKEY *pk = !bio          ? NULL
                   : private_key ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
                                 : PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (pk && is_p256(pk))
        return pk;
    EVP_PKEY_free(pk);
    sb_buf_addf(err, "%s is not an EC P-256 %s key (PEM)", path, private_key ? "private" : "public");
    return NULL;
}

sb_jwt_signer_t *sb_jwt_signer_load(const char *key_file, sb_buf_t *err)
{
    sb_jwt_signer_t *s = sb_calloc(1, sizeof *s);
    sb_buf_t pem = SB_BUF_INIT;
    EVP_PKEY *pk = NULL;
    if (!kid_of(key_file, ".key", s->kid)) {
        sb_buf_addf(err, "%s: a signing key file is named <kid>.key, kid [A-Za-z0-9_-]{1,%d}", key_file,
                    SB_JWT_MAX_KID);
        goto out_fail;
    }
    if (!(pk = read_p256(key_file, true, &pem, err)))
        goto out_fail;
    EVP_PKEY_free(pk); /* checked; libjwt signs from the PEM text */
    struct stat st;
    if (stat(key_file, &st) == 0 && (st.st_mode & 077))
        sb_warn("signing key %s is readable by group or others (mode %o)", key_file,
                (unsigned)(st.st_mode & 0777));
    s->pem_len = pem.len;
    s->pem = sb_buf_detach(&pem, NULL);
    return s;
out_fail:
    sb_buf_release(&pem);
    free(s);
    return NULL;
}

sb_jwt_signer_t *sb_jwt_signer_from_env(sb_buf_t *err)
{
    const char *f = sb_cfg_need("JWT_SIGNING_KEY_FILE", err);
    return f ? sb_jwt_signer_load(f, err) : NULL;
}

const char *sb_jwt_signer_kid(const sb_jwt_signer_t *s)
{
    return s->kid;
}

void sb_jwt_signer_free(sb_jwt_signer_t *s)
{
    if (!s)
        return;
    if (s->pem) {
        OPENSSL_cleanse(s->pem, s->pem_len);
        free(s->pem);
    }
    free(s);
}

sb_status_t sb_jwt_issue_es256(const sb_jwt_signer_t *s, const sb_jwt_claims_t *c, char **token,
                               sb_buf_t *err)
{
    jwt_t *j = NULL;
    sb_status_t st = SB_INTERNAL;
    *token = NULL;
    if (jwt_new(&j) != 0) {
        sb_buf_adds(err, "jwt: cannot allocate");
        return SB_INTERNAL;
    }
    if (jwt_add_header(j, "kid", s->kid) || jwt_add_grant(j, "iss", SB_JWT_ISSUER) ||
        jwt_add_grant(j, "aud", SB_JWT_AUDIENCE) || jwt_add_grant(j, "sub", c->sub) ||
        jwt_add_grant(j, "role", c->role) || jwt_add_grant(j, "jti", c->jti) ||
        jwt_add_grant_int(j, "iat", (long)c->iat) ||
        jwt_add_grant_int(j, "iat_ms", (long)(c->iat_ms ? c->iat_ms : c->iat * 1000)) ||
        jwt_add_grant_int(j, "exp", (long)c->exp) ||
        jwt_set_alg(j, JWT_ALG_ES256, (const unsigned char *)s->pem, (int)s->pem_len)) {
        sb_buf_adds(err, "jwt: cannot set claims");
        goto out_free;
    }
    *token = jwt_encode_str(j);
    if (!*token) {
        sb_buf_adds(err, "jwt: cannot sign");
        goto out_free;
    }
    st = SB_OK;
out_free:
    jwt_free(j); /* scrubs its copy of the key */
    return st;
}

/* Loads one public key file into k (kid already set). */
static bool key_load(const char *path, struct jwt_key *k, sb_buf_t *err)
{
    sb_buf_t pem = SB_BUF_INIT;
    BIGNUM *x = NULL, *y = NULL;
    bool ok = false;
    EVP_PKEY *pk = read_p256(path, false, &pem, err);
    if (!pk)
        goto out;
    unsigned char bx[32], by[32];
    if (!EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_X, &x) ||
        !EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_Y, &y) || BN_bn2binpad(x, bx, 32) != 32 ||
        BN_bn2binpad(y, by, 32) != 32) {
        sb_buf_addf(err, "%s: cannot read the public point", path);
        goto out;
    }
    b64url(bx, 32, k->x);
    b64url(by, 32, k->y);
    k->pk = pk;
    pk = NULL;
    ok = true;
out:
    BN_free(x);
    BN_free(y);
    EVP_PKEY_free(pk);
    sb_buf_release(&pem);
    return ok;
}

static void keys_free(struct jwt_key *keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        EVP_PKEY_free(keys[i].pk);
    free(keys);
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(((const struct jwt_key *)a)->kid, ((const struct jwt_key *)b)->kid);
}

/* Reads every <kid>.pub.pem of dir into a new sorted array. */
static bool keys_read(const char *dir, struct jwt_key **out, size_t *n_out, sb_buf_t *err)
{
    DIR *d = opendir(dir);
    if (!d) {
        sb_buf_addf(err, "cannot open the public key directory %s: %s", dir, strerror(errno));
        return false;
    }
    struct jwt_key *keys = sb_calloc(SB_JWT_MAX_KEYS, sizeof *keys);
    size_t n = 0;
    bool ok = true;
    struct dirent *e;
    while (ok && (e = readdir(d)) != NULL) {
        char kid[SB_JWT_MAX_KID + 1];
        if (e->d_name[0] == '.' || !kid_of(e->d_name, ".pub.pem", kid))
            continue;
        if (n == SB_JWT_MAX_KEYS) {
            sb_buf_addf(err, "%s holds more than %d public keys", dir, SB_JWT_MAX_KEYS);
            ok = false;
            break;
        }
        sb_buf_t path = SB_BUF_INIT;
        sb_buf_addf(&path, "%s/%s", dir, e->d_name);
        memcpy(keys[n].kid, kid, sizeof kid);
        ok = key_load(path.buf, &keys[n], err);
        if (ok)
            n++;
        sb_buf_release(&path);
    }
    closedir(d);
    if (ok && n == 0) {
        sb_buf_addf(err, "no <kid>.pub.pem public key in %s", dir);
        ok = false;
    }
    if (!ok) {
        keys_free(keys, n);
        return false;
    }
    qsort(keys, n, sizeof *keys, key_cmp);
    *out = keys;
    *n_out = n;
    return true;
}

sb_jwt_keyset_t *sb_jwt_keyset_load(const char *dir, sb_buf_t *err)
{
    struct jwt_key *keys;
    size_t n;
    if (!keys_read(dir, &keys, &n, err))
        return NULL;
    sb_jwt_keyset_t *ks = sb_calloc(1, sizeof *ks);
    ks->dir = sb_strdup(dir);
    pthread_rwlock_init(&ks->lock, NULL);
    pthread_mutex_init(&ks->reload_mu, NULL);
    ks->keys = keys;
    ks->n = n;
    ks->last_reload_ms = sb_now_ms();
    ks->reload_min_ms = SB_JWT_RELOAD_MIN_MS;
    return ks;
}

sb_jwt_keyset_t *sb_jwt_keyset_from_env(sb_buf_t *err)
{
    const char *d = sb_cfg_need("JWT_PUBLIC_KEYS_DIR", err);
    return d ? sb_jwt_keyset_load(d, err) : NULL;
}

sb_status_t sb_jwt_keyset_reload(sb_jwt_keyset_t *ks, sb_buf_t *err)
{
    struct jwt_key *keys, *old;
    size_t n, old_n;
    pthread_mutex_lock(&ks->reload_mu);
    ks->last_reload_ms = sb_now_ms();
    pthread_mutex_unlock(&ks->reload_mu);
    if (!keys_read(ks->dir, &keys, &n, err))
        return SB_UNAVAILABLE;
    pthread_rwlock_wrlock(&ks->lock);
    old = ks->keys;
    old_n = ks->n;
    ks->keys = keys;
    ks->n = n;
    pthread_rwlock_unlock(&ks->lock);
    keys_free(old, old_n);
    return SB_OK;
}

size_t sb_jwt_keyset_count(sb_jwt_keyset_t *ks)
{
    pthread_rwlock_rdlock(&ks->lock);
    size_t n = ks->n;
    pthread_rwlock_unlock(&ks->lock);
    return n;
}

void sb_jwt_keyset_set_reload_interval(sb_jwt_keyset_t *ks, int64_t ms)
{
    pthread_mutex_lock(&ks->reload_mu);
    ks->reload_min_ms = ms;
    pthread_mutex_unlock(&ks->reload_mu);
}

void sb_jwt_keyset_free(sb_jwt_keyset_t *ks)
{
    if (!ks)
        return;
    keys_free(ks->keys, ks->n);
    pthread_rwlock_destroy(&ks->lock);
    pthread_mutex_destroy(&ks->reload_mu);
    free(ks->dir);
    free(ks);
}

void sb_jwt_keyset_jwks(sb_jwt_keyset_t *ks, sb_buf_t *out)
{
    pthread_rwlock_rdlock(&ks->lock);
    sb_buf_adds(out, "{\"keys\":[");
    for (size_t i = 0; i < ks->n; i++) {
        const struct jwt_key *k = &ks->keys[i];
        /* kid, x, y are [A-Za-z0-9_-]: nothing to escape */
        sb_buf_addf(out,
                    "%s{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"kid\":\"%s\","
                    "\"use\":\"sig\",\"alg\":\"ES256\"}",
                    i ? "," : "", k->x, k->y, k->kid);
    }
    sb_buf_adds(out, "]}");
    pthread_rwlock_unlock(&ks->lock);
}

/* The ES256 signature (86 base64url characters: R || S, 32 bytes each) of
 * data[0..n) under pk, checked with OpenSSL against the key parsed at load. */
static bool es256_ok(EVP_PKEY *pk, const char *data, size_t n, const char *sig_b64)
{
    unsigned char rs[64];
    if (b64url_decode(sig_b64, SIG_ES256, rs, sizeof rs) != 64)
        return false;
    bool ok = false;
    unsigned char *der = NULL;
    EVP_MD_CTX *md = NULL;
    BIGNUM *r = BN_bin2bn(rs, 32, NULL), *s = BN_bin2bn(rs + 32, 32, NULL);
    ECDSA_SIG *sig = ECDSA_SIG_new();
    if (!r || !s || !sig || !ECDSA_SIG_set0(sig, r, s)) {
        BN_free(r);
        BN_free(s);
        goto out_free;
    }
    /* sig owns r and s now */
    int der_len = i2d_ECDSA_SIG(sig, &der);
    md = EVP_MD_CTX_new();
    ok = der_len > 0 && md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
         EVP_DigestVerify(md, der, (size_t)der_len, (const unsigned char *)data, n) == 1;
out_free:
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
    return ok;
}

static const struct jwt_key *key_find(const sb_jwt_keyset_t *ks, const char *kid)
{
    struct jwt_key probe;
    memcpy(probe.kid, kid, strlen(kid) + 1);
    return bsearch(&probe, ks->keys, ks->n, sizeof *ks->keys, key_cmp);
}

/* Reloads the set when kid is unknown and the last reload is old enough. */
static void reload_for(sb_jwt_keyset_t *ks, const char *kid)
{
    pthread_mutex_lock(&ks->reload_mu);
    bool due = sb_now_ms() - ks->last_reload_ms >= ks->reload_min_ms;
    pthread_mutex_unlock(&ks->reload_mu);
    if (!due)
        return;
    sb_buf_t err = SB_BUF_INIT;
    if (sb_jwt_keyset_reload(ks, &err) != SB_OK)
        sb_warn("jwt: reloading the public keys for kid %s: %s", kid, err.buf);
    sb_buf_release(&err);
}

sb_status_t sb_jwt_verify_es256(sb_jwt_keyset_t *ks, const char *token, int64_t now,
                                sb_jwt_claims_t *out, sb_buf_t *err)
{
    memset(out, 0, sizeof *out);
    const char *why = shape_error(token);
    if (why)
        return deny(err, why);
    char kid[SB_JWT_MAX_KID + 1];
    if ((why = header_check(token, "ES256", SIG_ES256, kid)) != NULL)
        return deny(err, why);

    const char *sig = strrchr(token, '.') + 1;
    bool found = false, sig_ok = false;
    for (int attempt = 0; attempt < 2 && !found; attempt++) {
        if (attempt == 1)
            reload_for(ks, kid);
        pthread_rwlock_rdlock(&ks->lock);
        const struct jwt_key *k = key_find(ks, kid);
        found = k != NULL;
        if (found)
            sig_ok = es256_ok(k->pk, token, (size_t)(sig - 1 - token), sig);
        pthread_rwlock_unlock(&ks->lock);
    }
    if (!found)
        return deny(err, "token key id unknown");
    if (!sig_ok)
        return deny(err, "invalid token signature");

    const char *payload = strchr(token, '.') + 1;
    unsigned char raw[SB_JWT_MAX_TOKEN];
    long n = b64url_decode(payload, (size_t)(sig - 1 - payload), raw, sizeof raw);
    json_t *grants =
        n > 0 ? json_loadb((const char *)raw, (size_t)n, JSON_REJECT_DUPLICATES, NULL) : NULL;
    sb_status_t st = SB_UNAUTHENTICATED;
    if (!json_is_object(grants)) {
        sb_buf_adds(err, "malformed token claims");
        goto out_free;
    }
    if (!claims_ok(grants, now, true, out, err))
        goto out_free;
    st = SB_OK;
out_free:
    json_decref(grants);
    if (st != SB_OK)
        memset(out, 0, sizeof *out);
    return st;
}
