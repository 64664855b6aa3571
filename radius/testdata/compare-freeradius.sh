#!/usr/bin/env bash
# Side-by-side server CPU per EAP-TLS login: gatehouse (the real binary on
# the shipped config.toml: CRLs required, LDIF directory, audit file on) and
# FreeRADIUS (Debian package freeradius, EAP-TLS with the same test PKI,
# CRL check on), loaded by the same radbench client (4 supplicants). Every
# figure is the server process's utime+stime (/proc/PID/stat) over the run
# divided by the logins: noise from other load on the machine only adds.
#
#   apt-get install -y --no-install-recommends freeradius
#   bash radius/testdata/compare-freeradius.sh [DURATION] [RUNS]   # default 10s 3
#
# GATEHOUSE_SERVER_BIN=path serves with another gatehouse binary (e.g. an
# older build, for a before/after); GATEHOUSE_NO_FREERADIUS=1 skips
# FreeRADIUS.
#
# Rows, per run:
#   full logins, TLS 1.2 and 1.3, both servers, key exchange X25519 (what
#     OpenSSL 3.0 peers negotiate), like for like (the supplicants offer
#     x25519,p256: OpenSSL's TLS 1.2 server will not use its ECDSA P-256
#     certificate with a client that does not list P-256, RFC 8422);
#   gatehouse full TLS 1.3 with X25519MLKEM768 (Go's default, the hybrid):
#     its extra cost is the difference with the X25519 row;
#   gatehouse resumed logins (each supplicant resumes its previous session),
#     TLS 1.2 and 1.3 (X25519 and hybrid).
set -euo pipefail
cd "$(dirname "$0")/../.."
d=${1:-10s}; runs=${2:-3}; conc=${GATEHOUSE_RADBENCH_CONCURRENCY:-4}
tmp=$(mktemp -d); pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
go build -o "$tmp/gatehouse" ./cmd/gatehouse
server=${GATEHOUSE_SERVER_BIN:-$tmp/gatehouse}
go test -c -o "$tmp/radius.test" ./radius
sed -e "s|^state_dir = .*|state_dir = \"$tmp/state\"|" -e 's|"testdata/|"'"$PWD"'/testdata/|g' \
    -e 's|^log_level = .*|log_level = "warn"|' -e 's|^metrics_listen = .*|metrics_listen = ""|' -e '/^pprof = /d' \
    config.toml > "$tmp/config.toml"
grep -q '^audit = "file"' "$tmp/config.toml" && grep -q '^revocation = "require"' "$tmp/config.toml"

row() { # label, radbench output on stdin
	awk -v l="$1" -v load="$(cut -d' ' -f1 /proc/loadavg)" '
		/^auths/ {a=$2; r=$5; f=$11; sub(/\)/, "", f); if (f != "0") r=r " FAILURES " f}
		/^resumed/ {res=" resumed " $2 "/" $4}
		/^key exchange/ {kx=" " $3}
		/^server CPU/ {c=$(NF-2)}
		END {printf "%-44s %8s per login  (%s logins, %s%s%s, load %s)\n", l, c, a, r, kx, res, load}' | tee -a "$tmp/rows"
}
# summary prints each row's range over the runs (radbench writes "693µs", "1.006ms").
summary() {
	awk '
		function us(v) { if (v ~ /ms$/) return substr(v, 1, length(v)-2) * 1000; if (v ~ /µs$/) return substr(v, 1, length(v)-3) + 0; return substr(v, 1, length(v)-1) * 1e6 }
		{ l = substr($0, 1, 44); sub(/ +$/, "", l); split(substr($0, 45), fs, " "); v = us(fs[1]); if (!(l in n)) order[++k] = l; n[l]++; x[l, n[l]] = v }
		END {
			print "== summary over runs: min / median / max µs per login"
			for (i = 1; i <= k; i++) {
				l = order[i]; m = n[l]
				for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (x[l, b] < x[l, a]) { t = x[l, a]; x[l, a] = x[l, b]; x[l, b] = t }
				printf "%-44s %6.0f / %6.0f / %6.0f  (%d runs)\n", l, x[l, 1], x[l, int((m + 1) / 2)], x[l, m], m
				med[l] = x[l, int((m + 1) / 2)]; lo[l] = x[l, 1]; hi[l] = x[l, m]
			}
			for (v = 2; v <= 3; v++) {
				g = "gatehouse  TLS 1." v " full    x25519"; f = "freeradius TLS 1." v " full    x25519"
				if ((g in med) && (f in med) && med[g] > 0 && hi[g] > 0)
					printf "full TLS 1.%d: FreeRADIUS / gatehouse %.1fx (medians), %.1fx (its best run / our worst)\n", v, med[f] / med[g], lo[f] / hi[g]
			}
		}' "$tmp/rows"
}
gh() { # label, bench flags...
	local l=$1; shift
	"$tmp/gatehouse" bench radius --server 127.0.0.1:1812 --secret-file testdata/secrets/radius-localhost \
		--cert testdata/pki/alice-chain.pem --key testdata/pki/alice.key --identity alice \
		--concurrency "$conc" --duration "$d" --server-pid "$pid" --progress -1s "$@" | row "$l"
}
fr() { # label, TLS version
	(cd radius && GATEHOUSE_FREERADIUS_BENCH=$d GATEHOUSE_RADBENCH_TLS=$2 GATEHOUSE_RADBENCH_GROUPS=x25519,p256 \
		GATEHOUSE_RADBENCH_CONCURRENCY=$conc "$tmp/radius.test" -test.count=1 -test.run 'TestFreeRADIUSBench$' -test.v) |
		sed -n 's/^ *freeradius_test.go:[0-9]*: <nil> //p; /^auths\|^latency\|^server CPU\|^key exchange/p' | row "$1"
}
echo "$(nproc) cores, $(uptime)"
for r in $(seq "$runs"); do
	echo "== run $r"
	"$server" serve -config "$tmp/config.toml" & pid=$!
	sleep 1
	"$tmp/gatehouse" bench radius --server 127.0.0.1:1812 --secret-file testdata/secrets/radius-localhost \
		--cert testdata/pki/alice-chain.pem --key testdata/pki/alice.key --identity alice --count 20 --progress -1s >/dev/null # warm up
	gh "gatehouse  TLS 1.2 full    x25519" --tls 1.2 --groups x25519,p256
	gh "gatehouse  TLS 1.3 full    x25519" --tls 1.3 --groups x25519,p256
	gh "gatehouse  TLS 1.3 full    x25519mlkem768" --tls 1.3 --groups x25519mlkem768,x25519,p256
	gh "gatehouse  TLS 1.2 resumed x25519" --tls 1.2 --groups x25519,p256 --resume
	gh "gatehouse  TLS 1.3 resumed x25519" --tls 1.3 --groups x25519,p256 --resume
	gh "gatehouse  TLS 1.3 resumed x25519mlkem768" --tls 1.3 --groups x25519mlkem768,x25519,p256 --resume
	kill $pid; wait $pid 2>/dev/null || true; pid=
	[ -n "${GATEHOUSE_NO_FREERADIUS:-}" ] && continue
	fr "freeradius TLS 1.2 full    x25519" 1.2
	fr "freeradius TLS 1.3 full    x25519" 1.3
done
summary
