/* Transport security for every gRPC listener and client: the gRPC core's SSL
 * credentials with the platform's CA (deploy/local/pki.sh locally, Secrets
 * issued by cert-manager or a mesh in Kubernetes).
 *
 * Listeners present their service certificate and accept two kinds of peer:
 * services, which present a certificate of the platform CA (verified; the
 * call is then known by the certificate's name, sb_tls_peer_service), and
 * end-user clients, which present none and prove who they are with a bearer
 * token instead. A certificate from any other CA fails the handshake.
 * Clients verify the server against the CA (and its name, see
 * sb_channel_get_service in sb/rpc.h) and present their own certificate when
 * they have one.
 *
 * Environment (read at each credentials creation, not cached):
 *   TLS_CA_FILE     the platform CA, PEM (every process)
 *   TLS_CERT_FILE   this process's certificate chain, PEM   } servers: required
 *   TLS_KEY_FILE    its private key, PEM                    } clients: optional, both or none
 *   GRPC_INSECURE=1 plaintext, debugging only: logged as a warning once
 *
 * A listener's certificate, key and CA are re-read when their files change
 * (checked at each new connection, by inode, size and mtime), so a renewed
 * certificate (pki.sh, cert-manager) is served without a restart. Channels
 * keep the credentials they were created with.
 *
 * Unset TLS variables are an error (start-up fails naming them), never a
 * quiet fallback to plaintext: only GRPC_INSECURE=1 turns TLS off. */
#ifndef SB_TLS_H
#define SB_TLS_H
#include <stdbool.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "sb/arena.h"
#include "sb/buf.h"

#define SB_TLS_ENV_CA "TLS_CA_FILE"
#define SB_TLS_ENV_CERT "TLS_CERT_FILE"
#define SB_TLS_ENV_KEY "TLS_KEY_FILE"
#define SB_TLS_ENV_INSECURE "GRPC_INSECURE"

/* true when gRPC runs plaintext: GRPC_INSECURE=1. Logs a warning the first
 * time. */
bool sb_tls_insecure(void);

/* Listener credentials: SSL with this process's certificate, client
 * certificates requested and verified against the CA when presented
 * (GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY); insecure credentials when
 * sb_tls_insecure(). NULL with a reason in err when a variable is missing or
 * a file unreadable. Caller releases with grpc_server_credentials_release
 * (after grpc_server_add_http2_port); use one per listener. */
grpc_server_credentials *sb_tls_server_creds(sb_buf_t *err);

/* Channel credentials: SSL verifying the server against the CA, presenting
 * this process's certificate when TLS_CERT_FILE/TLS_KEY_FILE are set
 * (server-side TLS only otherwise: end-user clients); insecure when
 * sb_tls_insecure(). NULL with a reason in err. Caller releases with
 * grpc_channel_credentials_release. */
grpc_channel_credentials *sb_tls_channel_creds(sb_buf_t *err);
/* The same presenting the certificate cert_file with its key key_file
 * instead of TLS_CERT_FILE/TLS_KEY_FILE (both NULL: none). For a process
 * that calls under more than one identity: the test harness calling as a
 * given service (sb_channel_get_with_identity in sb/rpc.h). */
grpc_channel_credentials *sb_tls_channel_creds_as(const char *cert_file, const char *key_file,
                                                  sb_buf_t *err);

/* The name of the service that made this (server-side) call: the CN of its
 * verified client certificate, or the first DNS SAN when there is no CN.
 * NULL when the transport is not TLS or the peer presented no certificate
 * (an end-user client), or the name is not [A-Za-z0-9._-]{1,64}. Allocated
 * in a. */
const char *sb_tls_peer_service(grpc_call *call, sb_arena_t *a);

#endif
