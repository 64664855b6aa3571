// Package vpn is gatehouse's WireGuard concentrator.
//
// WireGuard has no certificates, so a certificate vouches for a WireGuard
// key: a client calls POST /v1/enroll over mutual TLS with its public key;
// the server authorizes the presented chain with policy, leases a tunnel
// address, adds the peer to a wireguard-go device (AllowedIPs = that /32 and
// /128) and answers with a ready wg-quick configuration whose routes are the
// policy's destinations. The private key never leaves the client.
//
// Every packet a peer sends passes the filter in package vpn/filter, which
// enforces the peer's rule and tracks flows so only replies come back. The
// peer registry and address leases persist in the state directory, one JSON
// file per enrolled certificate, and a re-validation loop re-runs the policy
// on each stored certificate chain, removing or updating peers.
//
// The data plane is a real TUN device (Linux, CAP_NET_ADMIN; the interface
// address is set and the link brought up with iproute2's `ip`) or, for tests,
// wireguard-go's userspace tun/netstack. The UAPI socket is exposed in
// /var/run/wireguard so `wg show` works.
package vpn
