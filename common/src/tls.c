/* gRPC SSL credentials from TLS_* files; see sb/tls.h.
 *
 * Listener credentials use a certificate-config fetcher: gRPC calls it when
 * the listener starts (it must answer NEW then) and before each new
 * connection's handshake; it answers UNCHANGED unless a file's identity
 * (inode, size, mtime) moved, and then NEW with the files read again, so a
 * renewed certificate is served without a restart. A failed re-read answers
 * FAIL and gRPC keeps the previous certificate. gRPC has no destructor for
 * the fetcher's state, so the states live in a process-wide list (one per
 * listener, a few hundred bytes) and are never freed. */
#include "sb/tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sb/alloc.h"
#include "sb/config.h"
#include "sb/log.h"

#define PEM_MAX (256 * 1024) /* a CA bundle at most */

static const char *env(const char *name)
{
    const char *v = sb_cfg_str(name, NULL);
    return v && *v ? v : NULL;
}

bool sb_tls_insecure(void)
{
    static atomic_bool warned;
    const char *why = NULL;
    if (sb_cfg_bool(SB_TLS_ENV_INSECURE, false))
        why = "GRPC_INSECURE=1: gRPC runs in plaintext, without peer authentication (debugging only)";
    if (why && !atomic_exchange(&warned, true))
        sb_warn("%s", why);
    return why != NULL;
}

/* The PEM file at path as a NUL-terminated heap string (free()); name is
 * what messages call it (an environment variable's name). */
static char *read_pem_at(const char *name, const char *path, sb_buf_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        sb_buf_addf(err, "%s=%s: %s", name, path, strerror(errno));
        return NULL;
    }
    sb_buf_t b = SB_BUF_INIT;
    char chunk[4096];
    size_t n;
    bool ok = true;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > PEM_MAX) {
            sb_buf_addf(err, "%s=%s is larger than %d bytes", name, path, PEM_MAX);
            ok = false;
            break;
        }
        sb_buf_add(&b, chunk, n);
    }
    if (ok && (ferror(f) || b.len == 0)) {
        sb_buf_addf(err, "%s=%s: %s", name, path, b.len ? "read error" : "empty file");
        ok = false;
    }
    fclose(f);
    if (!ok || !strstr(b.buf, "-----BEGIN ")) {
        if (ok)
            sb_buf_addf(err, "%s=%s is not PEM", name, path);
        sb_buf_release(&b);
        return NULL;
    }
    return sb_buf_detach(&b, NULL);
}

/* The file named by env var `name` (see read_pem_at). */
static char *read_pem(const char *name, sb_buf_t *err)
{
    const char *path = env(name);
    if (!path) {
        sb_buf_addf(err,
                    "%s is not set (deploy/local/pki.sh env prints the TLS variables; GRPC_INSECURE=1 "
                    "runs plaintext)",
                    name);
        return NULL;
    }
    return read_pem_at(name, path, err);
}

static void free_secret(char *s)
{
    if (!s)
        return;
    memset(s, 0, strlen(s)); /* a private key */
    free(s);
}

/* ---- listener: certificate config fetcher ---- */

struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

struct fetcher {
    struct fetcher *next; /* process-wide list, see the top of the file */
    pthread_mutex_t mu;
    char *paths[3]; /* CA, certificate, key */
    struct file_id ids[3];
    bool served; /* the first config has been handed out */
};

static pthread_mutex_t fetchers_mu = PTHREAD_MUTEX_INITIALIZER;
static struct fetcher *fetchers;

static bool file_id_of(const char *path, struct file_id *id)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return false;
    *id = (struct file_id){st.st_dev, st.st_ino, st.st_size, st.st_mtim};
    return true;
}

static bool file_id_eq(const struct file_id *a, const struct file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Reads the three files into a new config; NULL with a reason. */
static grpc_ssl_server_certificate_config *config_read(struct fetcher *f, struct file_id ids[3],
                                                       sb_buf_t *err)
{
    char *pem[3] = {NULL, NULL, NULL};
    grpc_ssl_server_certificate_config *cfg = NULL;
    for (int i = 0; i < 3; i++) {
        FILE *fp;
        if (!file_id_of(f->paths[i], &ids[i]) || !(fp = fopen(f->paths[i], "rb"))) {
            sb_buf_addf(err, "%s: %s", f->paths[i], strerror(errno));
            goto out_free;
        }
        sb_buf_t b = SB_BUF_INIT;
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0 && b.len <= PEM_MAX)
            sb_buf_add(&b, chunk, n);
        fclose(fp);
        if (b.len == 0 || b.len > PEM_MAX || !strstr(b.buf, "-----BEGIN ")) {
            sb_buf_addf(err, "%s is not a PEM file of at most %d bytes", f->paths[i], PEM_MAX);
            sb_buf_release(&b);
            goto out_free;
        }
        pem[i] = sb_buf_detach(&b, NULL);
    }
    grpc_ssl_pem_key_cert_pair pair = {.private_key = pem[2], .cert_chain = pem[1]};
    cfg = grpc_ssl_server_certificate_config_create(pem[0], &pair, 1); /* copies */
out_free:
    free(pem[0]);
    free(pem[1]);
    free_secret(pem[2]);
    return cfg;
}

static grpc_ssl_certificate_config_reload_status fetch(void *user_data,
                                                       grpc_ssl_server_certificate_config **config)
{
    struct fetcher *f = user_data;
    grpc_ssl_certificate_config_reload_status st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    pthread_mutex_lock(&f->mu);
    bool changed = !f->served;
    for (int i = 0; i < 3 && !changed; i++) {
        struct file_id id;
        changed = !file_id_of(f->paths[i], &id) || !file_id_eq(&id, &f->ids[i]);
    }
    if (changed) {
        struct file_id ids[3];
        sb_buf_t err = SB_BUF_INIT;
        *config = config_read(f, ids, &err);
        if (*config) {
            memcpy(f->ids, ids, sizeof ids);
            if (f->served)
                sb_info("tls: certificate %s reloaded", f->paths[1]);
            f->served = true;
            st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
        } else {
            sb_error("tls: cannot load the listener's certificate: %s%s", err.buf,
                     f->served ? " (keeping the previous one)" : "");
            st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
        }
        sb_buf_release(&err);
    }
    pthread_mutex_unlock(&f->mu);
    return st;
}

grpc_server_credentials *sb_tls_server_creds(sb_buf_t *err)
{
    if (sb_tls_insecure())
        return grpc_insecure_server_credentials_create();
    const char *names[3] = {SB_TLS_ENV_CA, SB_TLS_ENV_CERT, SB_TLS_ENV_KEY};
    struct fetcher *f = sb_calloc(1, sizeof *f);
    for (int i = 0; i < 3; i++) {
        const char *p = env(names[i]);
        if (!p) {
            sb_buf_addf(err, "%s is not set (a TLS listener needs %s, %s and %s)", names[i], names[0],
                        names[1], names[2]);
            goto out_fail;
        }
        f->paths[i] = sb_strdup(p);
    }
    /* read once now, so a bad file fails start-up with a clear message */
    struct file_id ids[3];
    grpc_ssl_server_certificate_config *probe = config_read(f, ids, err);
    if (!probe)
        goto out_fail;
    grpc_ssl_server_certificate_config_destroy(probe);
    pthread_mutex_init(&f->mu, NULL);
    pthread_mutex_lock(&fetchers_mu);
    f->next = fetchers;
    fetchers = f;
    pthread_mutex_unlock(&fetchers_mu);
    grpc_ssl_server_credentials_options *o =
        grpc_ssl_server_credentials_create_options_using_config_fetcher(
            GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY, fetch, f);
    return grpc_ssl_server_credentials_create_with_options(o); /* takes o */
out_fail:
    for (int i = 0; i < 3; i++)
        free(f->paths[i]);
    free(f);
    return NULL;
}

/* ---- channel ---- */

/* Channel credentials presenting cert_file/key_file (both NULL: none). */
static grpc_channel_credentials *channel_creds(const char *cert_file, const char *key_file,
                                               sb_buf_t *err)
{
    grpc_channel_credentials *creds = NULL;
    char *ca = read_pem(SB_TLS_ENV_CA, err), *cert = NULL, *key = NULL;
    if (!ca)
        return NULL;
    if (!cert_file != !key_file) {
        sb_buf_addf(err, "%s and %s go together (a client certificate needs its key)", SB_TLS_ENV_CERT,
                    SB_TLS_ENV_KEY);
        goto out_free;
    }
    if (cert_file && (!(cert = read_pem_at(SB_TLS_ENV_CERT, cert_file, err)) ||
                      !(key = read_pem_at(SB_TLS_ENV_KEY, key_file, err))))
        goto out_free;
    grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
    creds = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL); /* copies */
    if (!creds)
        sb_buf_adds(err, "grpc: cannot create the SSL channel credentials");
out_free:
    free(ca);
    free(cert);
    free_secret(key);
    return creds;
}

grpc_channel_credentials *sb_tls_channel_creds(sb_buf_t *err)
{
    if (sb_tls_insecure())
        return grpc_insecure_credentials_create();
    return channel_creds(env(SB_TLS_ENV_CERT), env(SB_TLS_ENV_KEY), err);
}

grpc_channel_credentials *sb_tls_channel_creds_as(const char *cert_file, const char *key_file,
                                                  sb_buf_t *err)
{
    if (sb_tls_insecure())
        return grpc_insecure_credentials_create();
    return channel_creds(cert_file, key_file, err);
}

/* ---- the peer's service name ---- */

/* The first value of property `name`, NULL when none. */
static const grpc_auth_property *first_prop(const grpc_auth_context *ctx, const char *name)
{
    grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ctx, name);
    return grpc_auth_property_iterator_next(&it);
}

static bool name_ok(const char *v, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '.' || c == '_'))
            return false;
    }
    return true;
}

/* A SAN value that is an IP address (gRPC lists DNS and IP SANs alike). */
static bool is_ip(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || v[i] == '.' || v[i] == ':'))
            return false;
    return true;
}

const char *sb_tls_peer_service(grpc_call *call, sb_arena_t *a)
{
    grpc_auth_context *ctx = grpc_call_auth_context(call);
    if (!ctx)
        return NULL;
    const char *out = NULL;
    const grpc_auth_property *p = first_prop(ctx, GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME);
    if (!p || strncmp(p->value, GRPC_SSL_TRANSPORT_SECURITY_TYPE, p->value_length) != 0 ||
        p->value_length != strlen(GRPC_SSL_TRANSPORT_SECURITY_TYPE))
        goto out_release;
    /* authenticated = a client certificate was presented and verified */
    if (!grpc_auth_context_peer_is_authenticated(ctx))
        goto out_release;
    p = first_prop(ctx, GRPC_X509_CN_PROPERTY_NAME);
    if (!p || p->value_length == 0) {
        grpc_auth_property_iterator it =
            grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_SAN_PROPERTY_NAME);
        while ((p = grpc_auth_property_iterator_next(&it)) && is_ip(p->value, p->value_length))
            ;
    }
    if (p && name_ok(p->value, p->value_length))
        out = sb_arena_strndup(a, p->value, p->value_length);
out_release:
    grpc_auth_context_release(ctx);
    return out;
}
