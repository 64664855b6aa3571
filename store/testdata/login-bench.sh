#!/bin/sh
# Login rate of `gatehouse serve` with [store] backend = "file" and
# "postgres", alternating: gatehouse bench radius, 8 supplicants, TLS 1.2,
# DURATION each (default 10s), ROUNDS pairs (default 3). Starts a
# throwaway PostgreSQL (Debian's postgresql package; as root it runs as the
# postgres user) on port 55439 and removes it at the end.
# Run from the repository root: sh store/testdata/login-bench.sh [10s] [3]
set -eu
dur=${1:-10s}
rounds=${2:-3}
root=$(pwd)
tmp=$(mktemp -d /tmp/gh-login-bench.XXXXXX)
chmod 755 "$tmp"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -c "$*"; else sh -c "$*"; fi; }
mkdir "$tmp/pg"
[ "$(id -u)" = 0 ] && chown postgres "$tmp/pg"
as_pg "$pgbin/initdb -D $tmp/pg/data -A trust -U gatehouse --no-sync >/dev/null"
as_pg "$pgbin/pg_ctl -D $tmp/pg/data -o '-p 55439 -k $tmp/pg -c listen_addresses=127.0.0.1' -l $tmp/pg/log start >/dev/null"
trap 'as_pg "$pgbin/pg_ctl -D $tmp/pg/data -m fast stop >/dev/null"; rm -rf "$tmp"' EXIT
sleep 2
as_pg "$pgbin/createdb -h 127.0.0.1 -p 55439 -U gatehouse ghbench"
echo "postgres://gatehouse@127.0.0.1:55439/ghbench?sslmode=disable" > "$tmp/dsn"
go build -o "$tmp/gatehouse" ./cmd/gatehouse
for m in file postgres; do
	sed -e "s#\"testdata/#\"$root/testdata/#g" -e "s#state_dir = \"state\"#state_dir = \"$tmp/state-$m\"#" \
		-e 's#metrics_listen = "127.0.0.1:9812"#metrics_listen = ""#' \
		-e 's#listen = "127.0.0.1:1812"#listen = "127.0.0.1:18712"#' \
		-e 's#accounting_listen = "127.0.0.1:1813"#accounting_listen = "127.0.0.1:18713"#' \
		-e 's#log_level = "info"#log_level = "warn"#' config.toml > "$tmp/$m.toml"
done
printf '\n[store]\nbackend = "postgres"\ndsn_file = "%s/dsn"\nnode = "bench"\n' "$tmp" >> "$tmp/postgres.toml"
i=0
while [ $i -lt "$rounds" ]; do
	for m in file postgres; do
		"$tmp/gatehouse" serve -config "$tmp/$m.toml" > "$tmp/serve-$m.log" 2>&1 &
		pid=$!
		sleep 2
		printf '%-9s ' "$m"
		"$tmp/gatehouse" bench radius --server 127.0.0.1:18712 --secret-file testdata/secrets/radius-localhost \
			--cert testdata/pki/alice-chain.pem --key testdata/pki/alice.key \
			--concurrency 8 --duration "$dur" --tls 1.2 --server-pid $pid --progress -1s 2>&1 |
			awk '/^auths/ {printf "%s ", $5} /server CPU/ {print "server CPU per auth", $4}'
		kill -TERM $pid
		wait $pid || true
	done
	i=$((i + 1))
done
