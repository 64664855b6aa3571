#!/bin/sh
# iperf.sh measures TCP throughput (iperf3) through the gatehouse VPN
# concentrator with its packet filter on and off, side by side, in both
# directions. The client is wireguard-go built from the same module version
# gatehouse uses; everything runs in network namespaces the test creates and
# removes (needs root, iproute2, wg, iperf3).
#
#   sh vpn/testdata/iperf.sh            # 5 s per run
#   SECONDS_PER_RUN=20 ROUNDS=3 sh vpn/testdata/iperf.sh
#
# Runs alternate filter on/off so that load drifts on a shared machine hit
# both; the summary shows the best of the rounds.
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/wireguard-go" golang.zx2c4.com/wireguard
go test -c -o "$tmp/vpn.test" .
GATEHOUSE_IPERF=1 GATEHOUSE_WG_CLIENT="$tmp/wireguard-go" GATEHOUSE_IPERF_SECONDS="${SECONDS_PER_RUN:-5}" \
	GATEHOUSE_IPERF_ROUNDS="${ROUNDS:-2}" \
	"$tmp/vpn.test" -test.run '^TestNetnsThroughput$' -test.v | grep -E 'iperf3|^(--- )?(PASS|FAIL|ok)'
