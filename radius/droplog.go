package radius

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// Dropped datagrams are counted by reason and by client (nas.drops). The
// ones that point at a deployment mistake — a wrong shared secret, an
// access point not configured as a client, a NAS sending junk — also write
// a WARN naming the source address, the matched client and the reason, but
// at most one line per client and reason every dropLogEvery (with the
// number of drops not logged meanwhile), so a flood of garbage cannot
// become a flood of log lines. Requests answered with a Reject before any
// conversation exists (no EAP-Message, unknown State) are logged the same
// way, rate-limited per client.

// dropLogEvery is the minimum interval between two log lines of one kind.
const dropLogEvery = 10 * time.Second

// rateGate lets one event through per dropLogEvery and counts the others.
// It is lock-free and allocates nothing.
type rateGate struct {
	next       atomic.Int64 // unix nanoseconds before which events are suppressed
	suppressed atomic.Uint64
}

// allow reports whether an event at t (unix nanoseconds) may be logged,
// and how many were suppressed since the last one that was.
func (g *rateGate) allow(t int64) (ok bool, suppressed uint64) {
	n := g.next.Load()
	if t < n || !g.next.CompareAndSwap(n, t+int64(dropLogEvery)) {
		g.suppressed.Add(1)
		return false, 0
	}
	return true, g.suppressed.Swap(0)
}

// dropHints say what a logged drop from a UDP client usually means.
var dropHints = [numDrops]string{
	dUnknownClient:    "source address matches no [[radius.client]] network: add the access point, or check its address",
	dBadAuthenticator: "wrong shared secret on the access point or in its [[radius.client]]",
	dBadMA:            "wrong shared secret on the access point or in its [[radius.client]]",
	dMissingMA:        "the access point sends no Message-Authenticator: enable it (BlastRADIUS)",
	dMalformed:        "not a well-formed RADIUS packet",
	dUnexpectedCode:   "RADIUS code not served on this port (authentication port: Access-Request, Status-Server; accounting port: Accounting-Request, Status-Server)",
	dOverload:         "receive queue full: the server is overloaded or one source is flooding it",
}

// radsecDropHints are the hints for a drop on a RadSec connection. Its
// peer (an access point or a proxy) was admitted by its certificate and
// matched to a [[radius.radsec_client]], which has no shared secret to
// choose: over RadSec the secret is always "radsec" (RFC 6614).
var radsecDropHints = [numDrops]string{
	dUnknownClient:    "the certificate matches no [[radius.radsec_client]] (its ca_file and match)",
	dBadAuthenticator: `the RadSec peer signs with a shared secret other than "radsec": over RadSec the secret is always "radsec" (RFC 6614); set it so on the access point or proxy (a [[radius.radsec_client]] has no secret)`,
	dBadMA:            `the RadSec peer signs with a shared secret other than "radsec": over RadSec the secret is always "radsec" (RFC 6614); set it so on the access point or proxy (a [[radius.radsec_client]] has no secret)`,
	dMissingMA:        "the RadSec peer sends no Message-Authenticator: enable it on the access point or proxy (BlastRADIUS)",
	dMalformed:        "not a well-formed RADIUS packet on the RadSec connection",
	dUnexpectedCode:   "RADIUS code not served over RadSec (Access-Request, Accounting-Request and Status-Server are)",
	dOverload:         "receive queue full: the server is overloaded",
}

// dropHint is the hint for a drop of reason r from client n (nil: none
// matched), for its transport.
func dropHint(n *nas, r dropReason) string {
	if n != nil && n.radsec != nil {
		return radsecDropHints[r]
	}
	return dropHints[r]
}

// dropN counts a drop for client n (nil: no configured client).
func (s *Server) dropN(n *nas, r dropReason) {
	s.stats.drops[r].Add(1)
	if n != nil {
		n.drops[r].Add(1)
	}
}

// dropLog counts a drop and logs it, rate-limited per client and reason.
func (s *Server) dropLog(n *nas, src netip.AddrPort, r dropReason) {
	s.dropN(n, r)
	g := &s.unattributed[r]
	if n != nil {
		g = &n.gates[r]
	}
	ok, suppressed := g.allow(s.clock.Load())
	if !ok {
		return
	}
	client := ""
	if n != nil {
		client = n.name
	}
	s.log.Warn("radius: dropped", "src", src.String(), "client", client, "reason", dropNames[r],
		"hint", dropHint(n, r), "suppressed", suppressed)
}

// rejectLog logs an Access-Reject sent before any conversation exists,
// rate-limited per client: such requests need no secret beyond the
// client's, so they must not turn into one log line each.
func (s *Server) rejectLog(n *nas, src netip.AddrPort, reason string) {
	ok, suppressed := n.rejectGate.allow(s.clock.Load())
	if !ok {
		return
	}
	s.log.Info("radius: reject", "nas", n.name, "src", src.String(), "reason", reason, "suppressed", suppressed)
}

// tickClock sets the coarse clock the rate gates read (reading the time
// for every dropped datagram would cost more than dropping it).
func (s *Server) tickClock(now time.Time) { s.clock.Store(now.UnixNano()) }

// addrString renders a socket address for a log line: a string, never the
// JSON object slog would make of a *net.UDPAddr.
func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
