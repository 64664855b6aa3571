// Package radius is gatehouse's RADIUS server: Wi-Fi access points (NAS
// clients) send Access-Requests carrying EAP-TLS; the server runs the TLS
// handshake (package eap), asks an Authorizer about the client's certificate
// chain and answers with Access-Accept (VLAN, Session-Timeout, MS-MPPE keys)
// or Access-Reject. It also records accounting and answers Status-Server.
//
// Configuration, as cmd decodes it from the [radius] table:
//
//	[radius]
//	listen            = ":1812"
//	accounting_listen = ":1813"      # "off" disables accounting
//	accounting_file   = "/var/lib/gatehouse/accounting.jsonl"
//	fragment_size     = 1024         # largest EAP packet sent; Framed-MTU − 4 lowers it
//	tls_max_version   = "1.3"        # or "1.2"
//	max_sessions      = 65536
//	session_idle_timeout = "30s"
//	session_timeout   = "2m"
//	reply_message     = ""           # optional Reply-Message on rejects
//	[[radius.client]]
//	name = "office-aps"
//	network = "10.1.0.0/16"
//	secret_file = "/etc/gatehouse/radius-office.secret"
//
// RADIUS hygiene (see ARCHITECTURE.md): a Message-Authenticator is required
// on every Access-Request and Status-Server and sent first in every
// Access-Accept, -Reject and -Challenge (BlastRADIUS, CVE-2024-3596);
// unknown clients, bad authenticators and malformed datagrams are dropped
// and counted (Stats), never answered; an RFC 5080 reply cache keyed by
// (source, Identifier, Request Authenticator) answers retransmissions with
// the same bytes for 10 s, so a retransmission never advances a TLS
// handshake, and drops duplicates of a request still being worked on; work
// is bounded by a fixed worker pool, a fixed set of datagram buffers and a
// bounded session table (MaxSessions, idle and total timeouts; conversations
// that have sent no TLS data are evicted first).
//
// EAP-TLS: Identity → EAP-TLS Start → handshake in Access-Challenges keyed
// by State. A conversation costs a few hundred bytes until its first TLS
// data arrives; then one goroutine runs crypto/tls over an in-memory
// connection. After the handshake the Authorizer decides on the peer's
// certificates — for resumed sessions too (certificates restored from the
// ticket), so a decision is never replayed. TLS 1.3 (RFC 9190) ends with the
// one-byte commitment message and the peer's ACK; TLS 1.2 without Extended
// Master Secret is refused (crypto/tls will not export keys from it).
// MSK = first 64 of 128 exported bytes; MS-MPPE-Recv-Key = MSK[0:32],
// MS-MPPE-Send-Key = MSK[32:64], salt-encrypted per RFC 2548. VLAN
// attributes use tag 0, as hostapd and FreeRADIUS do.
//
// Accounting (RFC 2866): Start, Interim-Update and Stop are acknowledged
// after one JSON line (AcctRecord) is appended to AccountingFile; a Stop is
// fsynced before the answer, other records within a second. A record that
// cannot be written is not acknowledged.
//
// Packets are encoded and decoded by this package's small allocation-free
// codec (wire.go); layeh.com/radius provides the RFC 2548 salt encryption
// of the MS-MPPE keys and is the independent implementation the tests and
// the load tool (package radbench) parse replies with.
package radius
