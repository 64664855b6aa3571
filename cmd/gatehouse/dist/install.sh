#!/bin/sh
# Installs gatehouse as a systemd service: the README's "Install as a
# service" steps, and what the Debian package's postinst runs (--no-files).
#
#   sudo cmd/gatehouse/dist/install.sh [--root DIR] [--no-files] [BINARY [CONFIG]]
#
# BINARY goes to /usr/local/bin/gatehouse, the unit to /etc/systemd/system,
# the sysusers.d and tmpfiles.d entries to /etc; CONFIG (if given) becomes
# /etc/gatehouse/config.toml unless that file exists. Then, always:
#   - the system user and group gatehouse (systemd-sysusers, else adduser);
#   - /etc/gatehouse, /etc/gatehouse/pki, /etc/gatehouse/secrets:
#     root:gatehouse 0750 (the service reads, never writes, its config);
#   - /etc/gatehouse/config.toml: group gatehouse, no access for others;
#   - /var/lib/gatehouse: gatehouse:gatehouse 0750 (state_dir).
# --root DIR does all of it under DIR (tests, image builds); without it,
# /run/wireguard is set up and systemd is told about the unit.
# --no-files skips the copying (the package has placed the files).
set -eu

root=
files=1
while [ $# -gt 0 ]; do
	case $1 in
	--root) root=${2%/}; shift 2 ;;
	--root=*) root=${1#--root=}; root=${root%/}; shift ;;
	--no-files) files=; shift ;;
	-*) echo "install.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
bin=${1-}
config=${2-}
dist=$(cd "$(dirname "$0")" && pwd)

if [ -n "$files" ]; then
	if [ -n "$bin" ]; then
		install -D -m 0755 "$bin" "$root/usr/local/bin/gatehouse"
	fi
	install -d -m 0755 "$root/etc/systemd/system" "$root/etc/sysusers.d" "$root/etc/tmpfiles.d"
	# The unit names the packaged path; a manual install lives in /usr/local.
	sed 's|/usr/bin/gatehouse|/usr/local/bin/gatehouse|g' "$dist/gatehouse.service" >"$root/etc/systemd/system/gatehouse.service"
	chmod 0644 "$root/etc/systemd/system/gatehouse.service"
	install -m 0644 "$dist/gatehouse.sysusers" "$root/etc/sysusers.d/gatehouse.conf"
	install -m 0644 "$dist/gatehouse.tmpfiles" "$root/etc/tmpfiles.d/gatehouse.conf"
fi

# The user and group. systemd-sysusers finds gatehouse.conf in /etc or
# /usr/lib/sysusers.d (under --root if given).
if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers ${root:+--root="$root"} gatehouse.conf
elif [ -z "$root" ]; then
	getent passwd gatehouse >/dev/null ||
		adduser --system --group --quiet --home /var/lib/gatehouse --no-create-home \
			--shell /usr/sbin/nologin --gecos "gatehouse network access" gatehouse
else
	echo "install.sh: --root needs systemd-sysusers" >&2
	exit 1
fi
# Numeric ids from the target's own files: under --root, the host's user
# database does not know them.
uid=$(awk -F: '$1 == "gatehouse" { print $3 }' "$root/etc/passwd")
gid=$(awk -F: '$1 == "gatehouse" { print $3 }' "$root/etc/group")
if [ -z "$uid" ] || [ -z "$gid" ]; then
	echo "install.sh: no gatehouse user in $root/etc/passwd" >&2
	exit 1
fi

install -d -m 0750 -o 0 -g "$gid" "$root/etc/gatehouse" "$root/etc/gatehouse/pki" "$root/etc/gatehouse/secrets"
install -d -m 0750 -o "$uid" -g "$gid" "$root/var/lib/gatehouse"
cfg=$root/etc/gatehouse/config.toml
if [ -n "$files" ] && [ -n "$config" ] && [ ! -e "$cfg" ]; then
	install -m 0640 -o 0 -g "$gid" "$config" "$cfg"
fi
if [ -e "$cfg" ]; then
	chown "0:$gid" "$cfg"
	chmod 0640 "$cfg"
fi

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	systemd-tmpfiles --create gatehouse.conf
	systemctl daemon-reload
fi
