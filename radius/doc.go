// Package radius is gatehouse's RADIUS server: Wi-Fi access points (NAS
// clients) send Access-Requests carrying EAP-TLS; the server runs the TLS
// handshake (package eap), asks an Authorizer about the client's certificate
// chain and answers with Access-Accept (VLAN, Session-Timeout, MS-MPPE keys)
// or Access-Reject. It also records accounting and answers Status-Server.
//
// RADIUS hygiene (see ARCHITECTURE.md): a Message-Authenticator is required
// on every Access-Request and sent first in every Access-Accept, -Reject and
// -Challenge (BlastRADIUS, CVE-2024-3596); unknown clients, bad
// authenticators and malformed datagrams are dropped and counted, never
// answered; an RFC 5080 reply cache answers retransmissions with the same
// bytes; work is bounded by a fixed worker pool, a bounded queue and a
// bounded session table.
//
// Packets are encoded and decoded by this package's small allocation-free
// codec (wire.go); layeh.com/radius provides the RFC 2548 salt encryption
// of the MS-MPPE keys and is used by tests and the load tool as an
// independent implementation.
package radius
