#!/usr/bin/env bash
# Side-by-side server CPU per EAP-TLS authentication: gatehouse (the real
# binary on the shipped config.toml: real policy, LDIF directory, CRLs) and
# FreeRADIUS (Debian package freeradius, configured by the radius tests for
# EAP-TLS with the same test PKI), both loaded by the same radbench client.
#
#   apt-get install -y --no-install-recommends freeradius
#   bash radius/testdata/compare-freeradius.sh [DURATION] [TLS]   # default 10s 1.2
set -euo pipefail
cd "$(dirname "$0")/../.."
d=${1:-10s}; v=${2:-1.2}
tmp=$(mktemp -d); trap 'kill $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/gatehouse" ./cmd/gatehouse
sed -e "s|^state_dir = .*|state_dir = \"$tmp/state\"|" -e 's|"testdata/|"'"$PWD"'/testdata/|g' \
    -e 's|^log_level = .*|log_level = "warn"|' config.toml > "$tmp/config.toml"
"$tmp/gatehouse" serve -config "$tmp/config.toml" & pid=$!
sleep 1
echo "== gatehouse (TLS $v, $d)"
"$tmp/gatehouse" bench radius --server 127.0.0.1:1812 --secret-file testdata/secrets/radius-localhost \
  --cert testdata/pki/alice-chain.pem --key testdata/pki/alice.key --identity alice \
  --concurrency 8 --duration "$d" --tls "$v" --server-pid "$pid" --progress -1s
kill $pid; wait $pid 2>/dev/null || true
echo "== FreeRADIUS (TLS $v, $d)"
GATEHOUSE_FREERADIUS_BENCH=$d GATEHOUSE_RADBENCH_TLS=$v go test -count=1 -run 'TestFreeRADIUSBench$' -v ./radius | grep -E 'auths|latency|server CPU|SKIP|FAIL' || true
