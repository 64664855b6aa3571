#!/bin/sh
# Builds the Debian package with dpkg-deb (no debhelper, no make):
#
#   cmd/gatehouse/dist/deb/build.sh [-o OUTDIR] [-v VERSION] [-b BINARY] [-Z xz|gzip|none]
#
# It prints the .deb's path. The binary is built with CGO_ENABLED=0 (static)
# unless -b names one. The package holds /usr/bin/gatehouse, the systemd
# unit, sysusers.d and tmpfiles.d entries, the production example as the
# conffile /etc/gatehouse/config.toml, and the README. postinst creates the
# gatehouse user and sets the permissions (dist/install.sh --no-files); it
# does not enable the service: fill in the configuration, then
# `systemctl enable --now gatehouse`.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dist=$(dirname "$here")
repo=$(cd "$dist/../../.." && pwd)
out=$PWD
version=
bin=
compress=xz
while getopts o:v:b:Z: opt; do
	case $opt in
	Z) compress=$OPTARG ;;
	o) out=$OPTARG ;;
	v) version=$OPTARG ;;
	b) bin=$OPTARG ;;
	*) exit 2 ;;
	esac
done
if [ -z "$version" ]; then
	# A Debian version starts with a digit: v1.2.3 → 1.2.3; untagged → 0~git…
	if d=$(git -C "$repo" describe --tags --match 'v[0-9]*' 2>/dev/null); then
		version=$(echo "${d#v}" | sed 's/-\([0-9]*\)-g/+\1.g/')
	else
		version=0~git$(git -C "$repo" log -1 --format=%cd.%h --date=format:%Y%m%d 2>/dev/null || date -u +%Y%m%d)
	fi
fi
case $(go env GOARCH) in
386) arch=i386 ;;
arm) arch=armhf ;;
*) arch=$(go env GOARCH) ;;
esac

stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
umask 022
if [ -n "$bin" ]; then
	install -D -m 0755 "$bin" "$stage/usr/bin/gatehouse"
else
	mkdir -p "$stage/usr/bin"
	(cd "$repo" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$stage/usr/bin/gatehouse" ./cmd/gatehouse)
fi
install -D -m 0644 "$dist/gatehouse.service" "$stage/lib/systemd/system/gatehouse.service"
install -D -m 0644 "$dist/gatehouse.sysusers" "$stage/usr/lib/sysusers.d/gatehouse.conf"
install -D -m 0644 "$dist/gatehouse.tmpfiles" "$stage/usr/lib/tmpfiles.d/gatehouse.conf"
install -D -m 0755 "$dist/install.sh" "$stage/usr/lib/gatehouse/install.sh"
# Shipped root:root 0750/0640; postinst gives them to group gatehouse.
install -d -m 0750 "$stage/etc/gatehouse" "$stage/etc/gatehouse/pki" "$stage/etc/gatehouse/secrets"
install -m 0640 "$repo/config.example.toml" "$stage/etc/gatehouse/config.toml"
install -D -m 0644 "$repo/README.md" "$stage/usr/share/doc/gatehouse/README.md"
install -D -m 0644 "$repo/config.example.toml" "$stage/usr/share/doc/gatehouse/config.example.toml"

mkdir -p "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: gatehouse
Version: $version
Architecture: $arch
Maintainer: gatehouse maintainers <gatehouse@example.com>
Installed-Size: $size
Depends: systemd | adduser, iproute2
Recommends: wireguard-tools
Section: net
Priority: optional
Homepage: https://github.com/gatehouse/gatehouse
Description: certificate-based network access (RADIUS EAP-TLS, WireGuard VPN)
 One binary: Wi-Fi 802.1X through RADIUS/EAP-TLS, a WireGuard VPN that
 admits only holders of a valid employee certificate, and one policy
 (certificate, directory groups, access) for both.
CONTROL
echo /etc/gatehouse/config.toml >"$stage/DEBIAN/conffiles"
install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$stage/DEBIAN/"

mkdir -p "$out"
deb=$out/gatehouse_${version}_${arch}.deb
dpkg-deb --root-owner-group -Z"$compress" --build "$stage" "$deb" >/dev/null
echo "$deb"
