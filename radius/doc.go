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
//	max_pending_decisions = 1024     # authorizations running at once, beside the workers
//	reply_message     = ""           # optional Reply-Message on rejects
//	revalidate_every  = "60s"        # re-authorize live Wi-Fi sessions; negative: only on Revalidate
//	dynauth_timeout   = "2s"         # wait for a Disconnect/CoA answer before resending
//	dynauth_retries   = 2            # resends; negative: none
//	max_wifi_sessions = 65536        # accepted sessions tracked for re-validation
//	tls_session_cache = 65536        # TLS sessions kept for resumption
//	tls_session_cache_bytes = 67108864 # their memory (mostly client chains)
//	tls_session_lifetime = "24h"     # how long a session may be resumed
//	[[radius.client]]
//	name = "office-aps"
//	network = "10.1.0.0/16"
//	secret_file = "/etc/gatehouse/radius-office.secret"
//	coa_port = 3799                  # RFC 5176 port of the NAS; 0 = no dynamic authorization
//	coa = false                      # the NAS applies VLAN changes from a CoA-Request
//	coa_to_nas_ip = false            # send to NAS-IP-Address (if inside network) rather than the source
//
//	# RadSec (RADIUS over TLS, RFC 6614; radsec.go), off unless radsec_listen is set:
//	radsec_listen = "[::]:2083"
//	radsec_cert = "" radsec_key = "" # default: the RADIUS server certificate
//	radsec_idle_timeout = "10m"  radsec_max_conns = 256  radsec_max_conns_per_ip = 32
//	[[radius.radsec_client]]
//	name = "meraki"
//	ca_file = "/etc/gatehouse/meraki-ca.pem" # the peers' own CA, never an employee CA
//	match = ["DNS:ap-*.example.com"]  # DNS/URI/EMAIL/IP (SAN), CN, SUBJECT
//	coa = false  max_conns = 16  no_dynauth = false
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
// that have sent no TLS data are evicted first; MaxSessionBytes bounds the
// bytes they hold, evicting the biggest first, budget.go). A datagram is
// read only into a free buffer, so bursts wait in the socket's receive
// buffer (ReceiveBuffer); read datagrams wait in a fair queue, one bounded
// FIFO per source served in turn, so one flooding source cannot starve the
// others (fq.go). Every reply echoes the request's Proxy-State attributes
// in order (RFC 2865 section 5.33). Drops that point at a misconfiguration
// (wrong secret, unknown client) are logged rate-limited (droplog.go). The Authorizer, which may
// wait seconds on a directory, never runs on a worker: a finished handshake
// is handed, session locked and reply-cache entry busy, to one of at most
// MaxPendingDecisions decision goroutines, which sends the answer and stores
// it in the cache (decision.go); with all of them busy the request is
// dropped as "decisions_busy" and decided on the NAS's retransmission.
//
// EAP-TLS: Identity → EAP-TLS Start → handshake in Access-Challenges keyed
// by State. A conversation costs a few hundred bytes until its first TLS
// data arrives; then one goroutine runs crypto/tls over an in-memory
// connection. After the handshake the Authorizer decides on the peer's
// certificates — for resumed sessions too (certificates restored from the
// session), so a decision is never replayed. Session state stays on the
// server (eap.TicketCache, tlssessions.go): a supplicant's ticket is a
// 16-byte handle, not its certificate chain, so the final flight costs no
// round trips for the chain; a ticket resumes only after its conversation
// was accepted, once, and never across a policy swap (ForgetTLSSessions).
// TLS 1.3 (RFC 9190) ends with the
// one-byte commitment message and the peer's ACK; TLS 1.2 without Extended
// Master Secret is refused (crypto/tls will not export keys from it).
// MSK = first 64 of 128 exported bytes; MS-MPPE-Recv-Key = MSK[0:32],
// MS-MPPE-Send-Key = MSK[32:64], salt-encrypted per RFC 2548. VLAN
// attributes use tag 0, as hostapd and FreeRADIUS do.
//
// Accounting (RFC 2866): every Accounting-Request is acknowledged only
// after its JSON line (AcctRecord) is appended to AccountingFile and
// fsynced (group commit: one fsync per batch of waiting records). A record
// that cannot be written is rolled back to the last whole line (package
// policy/jsonl) and not acknowledged (drop reason accounting_write_failed),
// so the NAS retransmits; writing resumes by itself when space returns.
// With a shared store (SetShared, Config.Accounting "store" or "both") the
// record is acknowledged once it is in the node's durable spool instead,
// and Wi-Fi sessions are shared so that another node can adopt them from
// accounting (shared.go); the server never waits on the database.
//
// Revocation reaches live sessions (RFC 5176 dynamic authorization): each
// Access-Accept to a client with a coa_port carries, besides the rule's
// Class, a Class attribute with a random token that the NAS echoes in its
// accounting; that links the accounting session (Acct-Session-Id,
// Framed-IP) to the certificate chain that was authorized (wifisessions.go;
// without the token, accounting is matched by Acct-Session-Id, then by
// Calling-Station-Id and User-Name). Every revalidate_every and on
// Server.Revalidate (after a policy reload) each tracked session's chain is
// authorized again: denied sessions get a Disconnect-Request, changed Wi-Fi
// attributes a CoA-Request (coa = true) or a Disconnect-Request; a session
// whose status is unknown (directory or revocation source unreachable) is
// left connected with a warning, so an outage does not take every employee
// off Wi-Fi (revalidate.go). Requests carry a Message-Authenticator first
// and Event-Timestamp, are resent on timeout, and every outcome is logged
// once (event "disconnect" or "coa", coa.go).
//
// Packets are encoded and decoded by this package's small allocation-free
// codec (wire.go); layeh.com/radius provides the RFC 2548 salt encryption
// of the MS-MPPE keys and is the independent implementation the tests and
// the load tool (package radbench) parse replies with.
package radius
