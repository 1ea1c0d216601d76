#!/usr/bin/env bash
# Builds sb-grpcgw: grpc-gateway v1 (Debian's golang-grpc-gateway 1.6.4) in
# front of the member, performance and reservation services, its handlers
# generated from this repository's proto/*.proto (their google.api.http
# annotations). A benchmark tool (bench/gateway_compare.py), not part of the
# product; nothing here runs in `make build` or `make test`.
#
#   bench/grpcgw/build.sh [out-dir=.cache/grpcgw]   prints the binary's path
#
# Installs what it needs from Debian when missing (golang-go, the protoc
# plugins and the Go sources of grpc-gateway, goprotobuf, grpc-go, genproto),
# then generates and builds in GOPATH mode (GO111MODULE=off, GOPATH =
# <out-dir>/gopath:/usr/share/gocode): no network beyond apt. The binary is
# cached under <out-dir>, keyed by the hash of the protos and of this
# directory, so a rerun is instant.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${1:-$ROOT/.cache/grpcgw}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

PKGS=(golang-go protobuf-compiler golang-grpc-gateway golang-github-grpc-ecosystem-grpc-gateway-dev
  golang-goprotobuf-dev golang-google-grpc-dev golang-google-genproto-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "grpcgw: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; }
fi

PROTOS=(common.proto events.proto sb/api/options.proto member.proto performance.proto reservation.proto)
key="$(cd "$ROOT" && cat proto/*.proto proto/sb/api/*.proto proto/google/api/*.proto bench/grpcgw/main.go \
  bench/grpcgw/build.sh | sha256sum | cut -c1-16)"
BIN="$OUT/sb-grpcgw"
if [ -x "$BIN" ] && [ "$(cat "$OUT/stamp" 2>/dev/null)" = "$key" ]; then
  echo "$BIN"
  exit 0
fi

GOPATH_DIR="$OUT/gopath"
PKG=sbgw
rm -rf "$GOPATH_DIR/src/$PKG"
mkdir -p "$GOPATH_DIR/src/$PKG"
# every proto file its own Go package under sbgw/pb/ (the protos declare no
# go_package); the well-known and google.api imports map to Debian's packages
M="Mcommon.proto=$PKG/pb/common,Mevents.proto=$PKG/pb/events,Msb/api/options.proto=$PKG/pb/sbapi"
M="$M,Mmember.proto=$PKG/pb/member,Mperformance.proto=$PKG/pb/performance"
M="$M,Mreservation.proto=$PKG/pb/reservation"
M="$M,Mgoogle/api/annotations.proto=google.golang.org/genproto/googleapis/api/annotations"
M="$M,Mgoogle/api/http.proto=google.golang.org/genproto/googleapis/api/annotations"
M="$M,Mgoogle/protobuf/descriptor.proto=github.com/golang/protobuf/protoc-gen-go/descriptor"
# protoc-gen-go 1.3 names its output after the proto file, not the import
# path: generate apart and move each into its package's directory
declare -A GOPKG=([common.proto]=common [events.proto]=events [sb/api/options.proto]=sbapi
  [member.proto]=member [performance.proto]=performance [reservation.proto]=reservation)
gen="$OUT/gen"
for f in "${PROTOS[@]}"; do
  rm -rf "$gen" && mkdir -p "$gen" "$GOPATH_DIR/src/$PKG/pb/${GOPKG[$f]}"
  protoc -I "$ROOT/proto" -I /usr/include --go_out="plugins=grpc,$M:$gen" "$f"
  mv "$gen/${f%.proto}.pb.go" "$GOPATH_DIR/src/$PKG/pb/${GOPKG[$f]}/"
done
rm -rf "$gen"
for f in member.proto performance.proto reservation.proto; do
  protoc -I "$ROOT/proto" -I /usr/include --grpc-gateway_out="paths=import,$M:$GOPATH_DIR/src" "$f"
done
cp "$ROOT/bench/grpcgw/main.go" "$GOPATH_DIR/src/$PKG/main.go"
(cd "$GOPATH_DIR/src/$PKG" &&
  GO111MODULE=off GOPATH="$GOPATH_DIR:/usr/share/gocode" GOCACHE="$OUT/gocache" GOFLAGS= \
    go build -o "$BIN.tmp" . >&2)
mv "$BIN.tmp" "$BIN"
echo "$key" >"$OUT/stamp"
echo "$BIN"
