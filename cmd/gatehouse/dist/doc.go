// Package dist holds what installs gatehouse, and its tests: the systemd
// unit (gatehouse.service), the sysusers.d and tmpfiles.d entries,
// install.sh (the README's install steps, also run by the Debian package),
// deb/build.sh (the Debian package, built with dpkg-deb) and the container
// image definition (Containerfile). The package has no Go code of its own;
// its tests build the binary and check each of these for real.
package dist
