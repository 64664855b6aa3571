// Package vpn is gatehouse's WireGuard concentrator.
//
// WireGuard has no certificates, so a certificate vouches for a WireGuard
// key: a client calls POST /v1/enroll over mutual TLS with its public key;
// the server authorizes the presented chain with policy, leases a tunnel
// address, adds the peer to a wireguard-go device (AllowedIPs = that /32 and
// /128) and answers with a ready wg-quick configuration whose routes are the
// policy's destinations (split tunnel unless the rule says full_tunnel). The
// private key never leaves the client: [Enroll] generates it and inserts it
// into the configuration it writes.
//
// Enrollment API (HTTPS, client certificate required):
//
//	POST   /v1/enroll  {"public_key": "<base64>"} → 200 EnrollResponse
//	GET    /v1/me      → 200 MeResponse, 404 if this certificate is not enrolled
//	DELETE /v1/me      → 204: unenroll this certificate
//
// Errors are JSON {"error": "..."} written for the employee: 400 bad
// request, 403 refused (with what to do), 409 key already used by another
// certificate, 413 body too large, 503 no address left or a service is
// down. One certificate is one peer: re-enrolling it with a new key replaces
// the old key and keeps the address; distinct certificates of one identity
// count toward Config.MaxPeersPerIdentity.
//
// Every packet a peer sends passes the filter in package vpn/filter, which
// enforces the peer's rule and tracks flows so only replies come back. The
// peer registry and the address leases persist through a [Store] — by
// default [FileStore]: StateDir/peers, one versioned JSON file per enrolled
// certificate (a lease exists exactly as long as its record), written
// atomically; a record that cannot be read is quarantined, never deleted.
// A re-validation loop runs the policy again on every stored certificate
// chain at start, every RevalidateEvery and after each policy reload,
// through the engine of package policy/reval: a denied peer is suspended
// (off the device and the filter, record and lease kept) and restored when
// a later run allows it; changed access is applied to the filter; an
// undecided outcome (directory or revocation status unavailable) changes
// nothing; a mass cut for policy reasons is held until confirmed. Records
// are deleted only by their holder (DELETE /v1/me), an admin
// ([Server.RemovePeers], [RemoveStoredPeers]) or ExpiredGrace after the
// certificate expired.
//
// The data plane is a kernel TUN device (Linux, CAP_NET_ADMIN; the server
// address is set and the link brought up by running iproute2's `ip`) or,
// for tests, wireguard-go's userspace tun/netstack. The UAPI socket is served
// in /var/run/wireguard so `wg show` works. gatehouse does not touch
// forwarding or firewall settings: the admin enables net.ipv4.ip_forward,
// routes the pool back to the concentrator (or masquerades), and should
// allow forwarding to the protected networks only from the TUN interface, so
// traffic cannot go around the filter.
package vpn
