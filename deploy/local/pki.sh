#!/usr/bin/env bash
# The platform's local PKI: a CA, one certificate per service, and the
# access-token signing keys. Idempotent and quiet: run it before every `make
# run` / test run; it only creates what is missing and renews what is close to
# expiry. openssl only (no cfssl, no step). Kubernetes takes the same files
# from Secrets instead (see k8s/), issued by cert-manager or the mesh.
#
# usage:
#   deploy/local/pki.sh ensure [dir]          create / renew everything (quiet)
#   deploy/local/pki.sh rotate-jwt [dir]      add a new signing key and make it current
#   deploy/local/pki.sh env [dir] [service]   print `export` lines (service: its cert/key)
#   deploy/local/pki.sh issue <dir> <name>... certificates for extra names (tests)
# dir defaults to .cache/pki at the repository root (ignored by git).
#
# Layout of <dir> (cert-manager's names, so a Secret mounts the same way):
#   ca.crt, ca.key               platform CA: EC P-256, 5 years; renewed (new
#                                key) when it expires within 30 days, which
#                                re-issues every certificate below
#   <name>/tls.crt, tls.key      one per service of services/registry.txt plus
#                                `gateway` and `client-test`: CN and SAN DNS =
#                                <name>, SAN DNS localhost and IP 127.0.0.1,
#                                EKU serverAuth+clientAuth, 30 days; renewed
#                                when within 7 days of expiry, when it no
#                                longer verifies against ca.crt (CA changed) or
#                                when the key does not match
#   jwt/<kid>.key                access-token signing key (EC P-256, PKCS#8);
#   jwt/<kid>.pub.pem            its public key; kid = k<yyyymmdd>-<8 hex of the
#                                SHA-256 of the public key>
#   jwt/current                  the kid the auth service signs with. Created
#                                once; `rotate-jwt` adds a key and moves
#                                `current`; old public keys stay (tokens they
#                                signed still verify) until removed by hand.
# Private keys are mode 0600.
#
# Environment the runtime reads (`env` prints them):
#   TLS_CA_FILE           the platform CA (every process: verifies peers)
#   TLS_CERT_FILE         this process's certificate  (<dir>/<name>/tls.crt)
#   TLS_KEY_FILE          this process's private key  (<dir>/<name>/tls.key)
#   JWT_SIGNING_KEY_FILE  the current signing key     (auth only)
#   JWT_PUBLIC_KEYS_DIR   directory of <kid>.pub.pem  (every verifier)
#   GRPC_INSECURE=1       plaintext gRPC, for debugging only (logged as a warning)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${PYTHON:-python3}
CA_DAYS=1826        # 5 years
CA_RENEW_DAYS=30
LEAF_DAYS=30
LEAF_RENEW_DAYS=7
EXTRA_NAMES=(gateway client-test)

die() { echo "pki.sh: $*" >&2; exit 1; }

# Runs openssl quietly; its output is shown only when it fails.
ossl() {
    local out
    if ! out=$(openssl "$@" 2>&1); then
        echo "pki.sh: openssl $1 failed:" >&2
        echo "$out" >&2
        return 1
    fi
}

new_key() { # new_key <file>: EC P-256, PKCS#8, 0600, written atomically
    ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.tmp"
    chmod 600 "$1.tmp"
    mv -f "$1.tmp" "$1"
}

expires_within() { # expires_within <crt> <days>: true when missing or expiring
    [ -s "$1" ] || return 0
    ! openssl x509 -in "$1" -noout -checkend $(($2 * 86400)) >/dev/null 2>&1
}

pub_of() { openssl pkey -in "$1" -pubout 2>/dev/null; }
cert_pub() { openssl x509 -in "$1" -noout -pubkey 2>/dev/null; }

ensure_ca() {
    local d=$1
    if [ -s "$d/ca.key" ] && ! expires_within "$d/ca.crt" "$CA_RENEW_DAYS" &&
        [ "$(pub_of "$d/ca.key")" = "$(cert_pub "$d/ca.crt")" ]; then
        return 0
    fi
    new_key "$d/ca.key"
    ossl req -x509 -new -key "$d/ca.key" -sha256 -days "$CA_DAYS" \
        -subj "/O=showbook/CN=showbook platform CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$d/ca.crt.tmp"
    chmod 644 "$d/ca.crt.tmp"
    mv -f "$d/ca.crt.tmp" "$d/ca.crt"
}

leaf_ok() { # leaf_ok <dir> <name>: three openssl runs, the whole check of a run
    local d=$1 n=$2 c="$1/$2/tls.crt" k="$1/$2/tls.key" info
    [ -s "$k" ] && [ -s "$c" ] || return 1
    # -checkend fails the command when the certificate expires within the window
    info=$(openssl x509 -in "$c" -noout -checkend $((LEAF_RENEW_DAYS * 86400)) \
        -subject -nameopt multiline -pubkey 2>/dev/null) || return 1
    [ "$(sed -n 's/^ *commonName *= *//p' <<<"$info")" = "$n" ] || return 1
    [ "$(sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' <<<"$info")" = "$(pub_of "$k")" ] || return 1
    openssl verify -CAfile "$d/ca.crt" -purpose sslserver "$c" >/dev/null 2>&1
}

ensure_leaf() { # ensure_leaf <dir> <name>
    local d=$1 n=$2
    [[ $n =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]] || die "bad certificate name '$n'"
    leaf_ok "$d" "$n" && return 0
    mkdir -p "$d/$n"
    chmod 700 "$d/$n"
    local k="$d/$n/tls.key" tmp
    [ -s "$k" ] || new_key "$k"
    tmp=$(mktemp -d "$d/.issue.XXXXXX")
    cat >"$tmp/ext.cnf" <<EOF
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:$n,DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    ossl req -new -key "$k" -subj "/O=showbook/CN=$n" -out "$tmp/csr.pem" &&
        ossl x509 -req -in "$tmp/csr.pem" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
            -set_serial "0x$(openssl rand -hex 16)" -days "$LEAF_DAYS" -sha256 \
            -extfile "$tmp/ext.cnf" -out "$tmp/tls.crt" &&
        chmod 644 "$tmp/tls.crt" &&
        mv -f "$tmp/tls.crt" "$d/$n/tls.crt" || { rm -rf "$tmp"; return 1; }
    rm -rf "$tmp"
}

new_jwt_key() { # new_jwt_key <dir>: adds a key, makes it current, prints its kid
    local j="$1/jwt" tmp pub kid
    mkdir -p "$j"
    chmod 700 "$j"
    tmp=$(mktemp "$j/.new.XXXXXX")
    ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp"
    chmod 600 "$tmp"
    pub=$(openssl pkey -in "$tmp" -pubout)
    kid="k$(date -u +%Y%m%d)-$(openssl pkey -in "$tmp" -pubout -outform DER | openssl dgst -sha256 -r | cut -c1-8)"
    printf '%s\n' "$pub" >"$j/$kid.pub.pem.tmp"
    chmod 644 "$j/$kid.pub.pem.tmp"
    mv -f "$tmp" "$j/$kid.key"
    mv -f "$j/$kid.pub.pem.tmp" "$j/$kid.pub.pem"
    printf '%s\n' "$kid" >"$j/current.tmp"
    mv -f "$j/current.tmp" "$j/current"
    echo "$kid"
}

current_kid() { # prints the current kid when its key and public key exist
    local j="$1/jwt" kid
    [ -s "$j/current" ] || return 1
    kid=$(head -n1 "$j/current")
    [[ $kid =~ ^[A-Za-z0-9_-]{1,64}$ ]] && [ -s "$j/$kid.key" ] && [ -s "$j/$kid.pub.pem" ] || return 1
    echo "$kid"
}

service_names() {
    "$PYTHON" "$ROOT/scripts/registry.py" list | awk '{print $1}'
}

# Serialises concurrent runs (two test runs starting at once) on one dir.
lock_dir() {
    mkdir -p "$1"
    chmod 700 "$1"
    exec 9>"$1/.lock"
    flock 9
}

resolve_dir() {
    local d=${1:-$ROOT/.cache/pki}
    mkdir -p "$d"
    (cd "$d" && pwd)
}

cmd=${1:-}
[ $# -gt 0 ] && shift
umask 077
case "$cmd" in
ensure)
    dir=$(resolve_dir "${1:-}")
    lock_dir "$dir"
    names=$(service_names) || die "cannot list the services (scripts/registry.py list)"
    ensure_ca "$dir"
    for n in $names "${EXTRA_NAMES[@]}"; do
        ensure_leaf "$dir" "$n"
    done
    current_kid "$dir" >/dev/null || new_jwt_key "$dir" >/dev/null
    ;;
issue)
    [ $# -ge 2 ] || die "usage: pki.sh issue <dir> <name>..."
    dir=$(resolve_dir "$1")
    shift
    lock_dir "$dir"
    ensure_ca "$dir"
    for n in "$@"; do
        ensure_leaf "$dir" "$n"
    done
    ;;
rotate-jwt)
    dir=$(resolve_dir "${1:-}")
    lock_dir "$dir"
    new_jwt_key "$dir" >/dev/null
    ;;
env)
    dir=$(resolve_dir "${1:-}")
    svc=${2:-}
    kid=$(current_kid "$dir") || die "no signing key in $dir/jwt: run pki.sh ensure $dir"
    [ -s "$dir/ca.crt" ] || die "no CA in $dir: run pki.sh ensure $dir"
    printf 'export TLS_CA_FILE=%q\n' "$dir/ca.crt"
    printf 'export JWT_PUBLIC_KEYS_DIR=%q\n' "$dir/jwt"
    # the private key only to the auth service (or to a shell with no service)
    if [ -z "$svc" ] || [ "$svc" = auth ]; then
        printf 'export JWT_SIGNING_KEY_FILE=%q\n' "$dir/jwt/$kid.key"
    fi
    if [ -n "$svc" ]; then
        [ -s "$dir/$svc/tls.crt" ] || die "no certificate for '$svc' in $dir"
        printf 'export TLS_CERT_FILE=%q\n' "$dir/$svc/tls.crt"
        printf 'export TLS_KEY_FILE=%q\n' "$dir/$svc/tls.key"
    fi
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
