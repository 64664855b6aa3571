package radius

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"
	"layeh.com/radius/rfc2869"

	"github.com/gatehouse/gatehouse/store/spool"
	"github.com/gatehouse/gatehouse/store/wifi"
)

// acctSpec is an Accounting-Request for the de-duplication tests.
type acctSpec struct {
	status      rfc2866.AcctStatusType
	session     string // Acct-Session-Id; "" none
	id          byte   // Identifier
	delay       uint32 // Acct-Delay-Time; 0 none
	sessionTime uint32 // Acct-Session-Time; 0 none
	inOctets    uint32 // Acct-Input-Octets; 0 none
	event       int64  // Event-Timestamp (Unix); 0 none
	nasID       string // NAS-Identifier; "" none
	proxyState  string // Proxy-State; "" none
}

func (a acctSpec) encode(t testing.TB, secret []byte) []byte {
	t.Helper()
	p := layeh.New(layeh.CodeAccountingRequest, secret)
	p.Identifier = a.id
	rfc2866.AcctStatusType_Set(p, a.status)
	if a.session != "" {
		rfc2866.AcctSessionID_SetString(p, a.session)
	}
	rfc2865.UserName_SetString(p, "alice")
	rfc2865.CallingStationID_SetString(p, "02-00-00-00-00-01")
	if a.nasID != "" {
		rfc2865.NASIdentifier_SetString(p, a.nasID)
	}
	if a.sessionTime != 0 {
		rfc2866.AcctSessionTime_Set(p, rfc2866.AcctSessionTime(a.sessionTime))
	}
	if a.inOctets != 0 {
		rfc2866.AcctInputOctets_Set(p, rfc2866.AcctInputOctets(a.inOctets))
	}
	if a.event != 0 {
		rfc2869.EventTimestamp_Set(p, time.Unix(a.event, 0))
	}
	if a.delay != 0 {
		rfc2866.AcctDelayTime_Set(p, rfc2866.AcctDelayTime(a.delay))
	}
	if a.proxyState != "" {
		rfc2865.ProxyState_AddString(p, a.proxyState)
	}
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// acctFrom sends b from a fresh UDP socket bound to local (a new source
// port each time) and returns the Accounting-Response, checked against b
// (authenticator, Identifier, Proxy-State echoed), or nil on timeout.
func acctFrom(t *testing.T, local string, to net.Addr, b []byte, wait time.Duration) []byte {
	t.Helper()
	c := dialFrom(t, local, to)
	defer c.Close()
	r := rawExchange(t, c, b, wait)
	if r != nil {
		checkAcctReply(t, b, r, []byte(testSecret))
	}
	return r
}

func checkAcctReply(t testing.TB, req, reply, secret []byte) {
	t.Helper()
	if reply[0] != codeAccountingResponse || reply[1] != req[1] || !layeh.IsAuthenticResponse(reply, req, secret) {
		t.Fatalf("bad Accounting-Response (code %d, id %d for %d)", reply[0], reply[1], req[1])
	}
	rq, _ := layeh.Parse(req, secret)
	rp, err := layeh.Parse(reply, secret)
	if err != nil {
		t.Fatal(err)
	}
	if want, got := rfc2865.ProxyState_GetString(rq), rfc2865.ProxyState_GetString(rp); want != got {
		t.Fatalf("Proxy-State %q echoed, want %q", got, want)
	}
}

// TestAccountingDuplicateAcrossPorts: over real UDP, the same record sent
// again from another source port with a new Identifier, a larger
// Acct-Delay-Time (so another authenticator) and another Proxy-State is
// answered (its own Identifier, its own Proxy-State) but written once.
func TestAccountingDuplicateAcrossPorts(t *testing.T) {
	file := filepath.Join(t.TempDir(), "accounting.jsonl")
	s := startServer(t, func(c *Config) { c.AccountingFile = file })
	rec := acctSpec{status: rfc2866.AcctStatusType_Value_Start, session: "dup-1", id: 1, nasID: "ap-1", event: 1764633600, proxyState: "hop-a"}
	if acctFrom(t, "127.0.0.1:0", s.AcctAddr(), rec.encode(t, []byte(testSecret)), 5*time.Second) == nil {
		t.Fatal("no answer")
	}
	rec.id, rec.delay, rec.proxyState = 77, 12, "hop-b"
	if acctFrom(t, "127.0.0.1:0", s.AcctAddr(), rec.encode(t, []byte(testSecret)), 5*time.Second) == nil {
		t.Fatal("no answer to the copy from another port")
	}
	if recs := readAcct(t, file); len(recs) != 1 {
		t.Fatalf("%d records, want 1: %+v", len(recs), recs)
	}
	st := s.Stats()
	if st.AccountingRecords != 1 || st.AccountingDuplicates["lo"] != 1 {
		t.Errorf("records %d, duplicates %v; want 1 and lo:1", st.AccountingRecords, st.AccountingDuplicates)
	}
}

// Accounting status types of the key cases.
const (
	acctStart   = rfc2866.AcctStatusType_Value_Start
	acctInterim = rfc2866.AcctStatusType_Value_InterimUpdate
	acctOn      = rfc2866.AcctStatusType_Value_AccountingOn
)

// acctKeyCases: pairs of accounting requests, and how many records they
// are (2: two records; 1: the second is a copy of the first).
var acctKeyCases = []struct {
	name          string
	first, second acctSpec
	from2         string // source address of the second; "" 127.0.0.1
	want          int
}{
	{"interim with new counters",
		acctSpec{status: acctInterim, session: "s", id: 1, nasID: "ap", sessionTime: 600, inOctets: 1000},
		acctSpec{status: acctInterim, session: "s", id: 2, nasID: "ap", sessionTime: 1200, inOctets: 5000}, "", 2},
	{"interim with new session time only (idle station)",
		acctSpec{status: acctInterim, session: "s", id: 1, nasID: "ap", sessionTime: 600, inOctets: 1000},
		acctSpec{status: acctInterim, session: "s", id: 2, nasID: "ap", sessionTime: 1200, inOctets: 1000}, "", 2},
	{"interim retransmitted",
		acctSpec{status: acctInterim, session: "s", id: 1, nasID: "ap", sessionTime: 600, inOctets: 1000},
		acctSpec{status: acctInterim, session: "s", id: 2, nasID: "ap", sessionTime: 600, inOctets: 1000, delay: 30}, "", 1},
	{"interim resent with updated counters (RFC 5080 erratum 4623)",
		acctSpec{status: acctInterim, session: "s", id: 1, nasID: "ap", sessionTime: 600, inOctets: 1000, event: 1000, delay: 30},
		acctSpec{status: acctInterim, session: "s", id: 2, nasID: "ap", sessionTime: 630, inOctets: 1100, event: 1030}, "", 2},
	{"stop after start",
		acctSpec{status: acctStart, session: "s", id: 1, nasID: "ap"},
		acctSpec{status: rfc2866.AcctStatusType_Value_Stop, session: "s", id: 2, nasID: "ap"}, "", 2},
	{"same session id from two access points",
		acctSpec{status: acctStart, session: "s", id: 1, nasID: "ap-1"},
		acctSpec{status: acctStart, session: "s", id: 1, nasID: "ap-2"}, "", 2},
	{"no NAS identity, two source addresses",
		acctSpec{status: acctStart, session: "s", id: 1},
		acctSpec{status: acctStart, session: "s", id: 2, delay: 3}, "127.0.0.2", 2},
	{"no NAS identity, one source address",
		acctSpec{status: acctStart, session: "s", id: 1},
		acctSpec{status: acctStart, session: "s", id: 2, delay: 3}, "", 1},
	{"Accounting-On with Event-Timestamp retransmitted",
		acctSpec{status: acctOn, id: 1, nasID: "ap", event: 5000},
		acctSpec{status: acctOn, id: 2, nasID: "ap", event: 5000, delay: 2}, "", 1},
	{"two Accounting-On without session id or Event-Timestamp",
		acctSpec{status: acctOn, id: 1, nasID: "ap"},
		acctSpec{status: acctOn, id: 2, nasID: "ap"}, "", 2},
}

// TestAccountingDuplicateKey: what is one record and what is two.
func TestAccountingDuplicateKey(t *testing.T) {
	for _, c := range acctKeyCases {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "accounting.jsonl")
			s := startServer(t, func(c *Config) { c.AccountingFile = file })
			if acctFrom(t, "127.0.0.1:0", s.AcctAddr(), c.first.encode(t, []byte(testSecret)), 5*time.Second) == nil {
				t.Fatal("no answer")
			}
			from := c.from2
			if from == "" {
				from = "127.0.0.1"
			}
			if acctFrom(t, from+":0", s.AcctAddr(), c.second.encode(t, []byte(testSecret)), 5*time.Second) == nil {
				t.Fatal("no answer to the second")
			}
			if recs := readAcct(t, file); len(recs) != c.want {
				t.Fatalf("%d records, want %d: %+v", len(recs), c.want, recs)
			}
			if dups := s.Stats().AccountingDuplicates["lo"]; dups != uint64(2-c.want) {
				t.Errorf("duplicates %d, want %d", dups, 2-c.want)
			}
		})
	}
}

// TestRadSecAccountingDuplicateAcrossConnections: an access point whose
// RadSec connection dropped sends its record again on a new connection,
// with a new Identifier and Acct-Delay-Time: answered, recorded once. A
// new Interim-Update on the new connection is recorded; the same record
// from another client (a UDP [[radius.client]]) is that client's own.
func TestRadSecAccountingDuplicateAcrossConnections(t *testing.T) {
	file := filepath.Join(t.TempDir(), "acct.jsonl")
	s := startRadSec(t, func(c *Config) { c.AccountingFile = file })
	rec := acctSpec{status: rfc2866.AcctStatusType_Value_InterimUpdate, session: "rs-dup", id: 10, nasID: "ap-1", sessionTime: 600, inOctets: 4000}
	rc1 := s.mustDial(t, &s.rs.ap)
	req := rec.encode(t, radsecKey)
	if checkReply(t, req, rc1.exchange(req)).Code != layeh.CodeAccountingResponse {
		t.Fatal("not an Accounting-Response")
	}
	rc1.c.Close()
	<-rc1.done

	rc2 := s.mustDial(t, &s.rs.ap)
	rec.id, rec.delay = 11, 40
	req = rec.encode(t, radsecKey)
	if checkReply(t, req, rc2.exchange(req)).Code != layeh.CodeAccountingResponse {
		t.Fatal("not an Accounting-Response")
	}
	if recs := readAcct(t, file); len(recs) != 1 {
		t.Fatalf("%d records after the copy on a new connection, want 1", len(recs))
	}
	rec.id, rec.delay, rec.sessionTime, rec.inOctets = 12, 0, 1200, 9000
	req = rec.encode(t, radsecKey)
	checkReply(t, req, rc2.exchange(req))
	if recs := readAcct(t, file); len(recs) != 2 || *recs[1].SessionTime != 1200 {
		t.Fatalf("records %+v, want the new Interim-Update second", recs)
	}
	// Client "lo" over UDP: its own records.
	if acctFrom(t, "127.0.0.1:0", s.AcctAddr(), rec.encode(t, []byte(testSecret)), 5*time.Second) == nil {
		t.Fatal("no answer over UDP")
	}
	if recs := readAcct(t, file); len(recs) != 3 || recs[2].NAS != "lo" {
		t.Fatalf("records %+v", recs)
	}
	if d := s.Stats().AccountingDuplicates; d["aps"] != 1 || d["lo"] != 0 {
		t.Errorf("duplicates %v, want aps:1", d)
	}
}

// TestAccountingDuplicateToStore: accounting = "store" (the spool of a
// shared store: the file backend and PostgreSQL): the copy from another
// port is answered and the store has one row.
func TestAccountingDuplicateToStore(t *testing.T) {
	for _, backend := range []string{"file", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			store := backendStore(t, backend)
			sp := startSpool(t, spool.Config{Dir: t.TempDir(), Node: "a"}, store)
			s := startServerWith(t, func(s *Server) { s.SetShared(wifi.Node{Spool: sp, Store: store}) }, func(c *Config) {
				c.Accounting = AccountingStore
			})
			rec := acctSpec{status: rfc2866.AcctStatusType_Value_Stop, session: "store-dup", id: 3, nasID: "ap-1", sessionTime: 60}
			for i := range 2 {
				rec.id, rec.delay = byte(3+i), uint32(5*i)
				if acctFrom(t, "127.0.0.1:0", s.AcctAddr(), rec.encode(t, []byte(testSecret)), 5*time.Second) == nil {
					t.Fatal("no answer")
				}
			}
			waitUntil(t, "the spool to drain", 20*time.Second, func() bool { return sp.Stats().Records == 0 })
			rows, err := store.Accounting(context.Background(), "store-dup")
			if err != nil || len(rows) != 1 {
				t.Fatalf("store rows %d, %v; want 1", len(rows), err)
			}
		})
	}
}

// gatedShared is a Shared whose Append waits for the test: a record stays
// "being committed" as long as the test wants.
type gatedShared struct {
	gate chan error // each Append takes one value: its result
	mu   sync.Mutex
	recs [][]byte
}

func (g *gatedShared) Append(kind string, data ...[]byte) error {
	if kind != kindAcct {
		return nil
	}
	select {
	case err := <-g.gate:
		if err != nil {
			return err
		}
	case <-time.After(5 * time.Second):
		return errors.New("gatedShared: the test let no commit through")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.recs = append(g.recs, data...)
	return nil
}

func (g *gatedShared) LookupSession(context.Context, string) (json.RawMessage, bool, error) {
	return nil, false, nil
}

func (g *gatedShared) n() int { g.mu.Lock(); defer g.mu.Unlock(); return len(g.recs) }

// TestAccountingDuplicateWhileCommitting: a copy that arrives (from
// another port) while the record is still being committed waits for the
// commit: both are answered and one record is written. When the commit
// fails neither is answered and nothing is remembered: the next
// retransmission is written once.
func TestAccountingDuplicateWhileCommitting(t *testing.T) {
	g := &gatedShared{gate: make(chan error)}
	s := startServerWith(t, func(s *Server) { s.SetShared(g) }, func(c *Config) { c.Accounting = AccountingStore })
	rec := acctSpec{status: rfc2866.AcctStatusType_Value_Start, session: "busy", id: 1, nasID: "ap-1"}
	send := func(id byte, delay uint32) chan []byte {
		r := rec
		r.id, r.delay = id, delay
		b := r.encode(t, []byte(testSecret))
		ch := make(chan []byte, 1)
		go func() { ch <- acctFrom(t, "127.0.0.1:0", s.AcctAddr(), b, 3*time.Second) }()
		return ch
	}
	// Fails: neither answered, nothing recorded.
	a, b := send(1, 0), send(2, 4)
	waitFor(t, "the copy waiting", func() bool { return waiting(s.Server) == 1 })
	g.gate <- errors.New("disk on fire")
	if <-a != nil || <-b != nil {
		t.Fatal("answered although the commit failed")
	}
	if g.n() != 0 {
		t.Fatal("recorded although the commit failed")
	}
	// Succeeds: both answered, one record.
	a, b = send(3, 10), send(4, 14)
	waitFor(t, "the copy waiting", func() bool { return waiting(s.Server) == 1 })
	g.gate <- nil
	if <-a == nil || <-b == nil {
		t.Fatal("not both answered")
	}
	if g.n() != 1 {
		t.Fatalf("%d records, want 1", g.n())
	}
	if d := s.Stats().AccountingDuplicates["lo"]; d != 1 {
		t.Errorf("duplicates %d, want 1", d)
	}
}

// waiting counts the duplicates waiting for a record being committed.
func waiting(s *Server) int {
	a := &s.acct.seen
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, owner := range a.busy {
		n += len(owner.dups)
	}
	return n
}

// TestAcctSeenBounds: records are forgotten after acctSeenTTL, and at
// most acctSeenMax are remembered, the oldest forgotten first.
func TestAcctSeenBounds(t *testing.T) {
	var a acctSeen
	a.init()
	t0 := time.Unix(1_000_000, 0)
	claim := func(i int, at time.Time) {
		t.Helper()
		req := &acctReq{}
		if st := a.claim(acctID{uint64(i)}, req, at); st != seenNew {
			t.Fatalf("claim %d: %v", i, st)
		}
		a.done(acctID{uint64(i)}, req, true, at)
	}
	claim(0, t0)
	if !a.recorded(acctID{0}, t0.Add(acctSeenTTL-time.Second)) || a.recorded(acctID{0}, t0.Add(acctSeenTTL)) {
		t.Fatal("TTL not honoured")
	}
	for i := 1; i <= acctSeenMax; i++ {
		claim(i, t0.Add(time.Millisecond))
	}
	if a.len() != acctSeenMax || a.recorded(acctID{0}, t0.Add(time.Second)) || !a.recorded(acctID{1}, t0.Add(time.Second)) {
		t.Fatalf("len %d; oldest not evicted first", a.len())
	}
	// Everything expires: the next insertion clears it.
	claim(-1, t0.Add(time.Hour))
	if a.len() != 1 {
		t.Fatalf("len %d after expiry, want 1", a.len())
	}
}

// TestAcctIdentityAllocs: the duplicate check allocates nothing.
func TestAcctIdentityAllocs(t *testing.T) {
	var a acctSeen
	a.init()
	n := &nas{name: "ap"}
	b := acctSpec{status: rfc2866.AcctStatusType_Value_InterimUpdate, session: "x", nasID: "ap", sessionTime: 5, delay: 2}.encode(t, []byte(testSecret))
	p, err := parsePacket(b)
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddrPort("127.0.0.1:1813")
	now := time.Now()
	if allocs := testing.AllocsPerRun(1000, func() {
		a.recorded(a.identity(n, p, src, 0), now)
	}); allocs != 0 {
		t.Fatalf("%v allocations per check", allocs)
	}
}

// TestParseAcctAllocs: parsing a record allocates for what it carries
// only (an absent counter costs nothing; it used to cost one allocation
// each).
func TestParseAcctAllocs(t *testing.T) {
	b := acctSpec{status: rfc2866.AcctStatusType_Value_Start, session: "x"}.encode(t, []byte(testSecret))
	p, err := parsePacket(b)
	if err != nil {
		t.Fatal(err)
	}
	n := &nas{name: "ap"}
	src := netip.MustParseAddrPort("127.0.0.1:1813")
	now := time.Now()
	var rec AcctRecord
	// Acct-Session-Id, User-Name, Calling-Station-Id and the source
	// address: four strings.
	if allocs := testing.AllocsPerRun(100, func() { rec = parseAcct(p, n, src, now) }); allocs > 4 {
		t.Fatalf("%v allocations to parse a Start without counters, want 4", allocs)
	}
	_ = rec
}

// FuzzAcctIdentity: any Accounting-Request is parsed and keyed without
// panic; its identity ignores the Identifier, the authenticator,
// Acct-Delay-Time and Proxy-State, and changes with any other attribute.
func FuzzAcctIdentity(f *testing.F) {
	f.Add([]byte{40, 6, 0, 0, 0, 3, 46, 6, 0, 0, 2, 88}, byte(1))
	f.Add([]byte{40, 6, 0, 0, 0, 7, 32, 4, 'a', 'p'}, byte(2))
	f.Add([]byte{41, 6, 0, 0, 0, 9, 33, 3, 'x'}, byte(3))
	var a acctSeen
	a.init()
	n := &nas{name: "ap"}
	src := netip.MustParseAddrPort("127.0.0.1:1813")
	mk := func(id byte, auth byte, attrs ...[]byte) (packet, bool) {
		b := make([]byte, headerLen, maxPacket)
		b[0], b[1] = codeAccountingRequest, id
		b[4] = auth
		b = append(b, attrSessionIDSeed...) // names an event: the identity applies
		for _, at := range attrs {
			b = append(b, at...)
		}
		if len(b) > maxPacket {
			return packet{}, false
		}
		binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
		p, err := parsePacket(b)
		return p, err == nil
	}
	f.Fuzz(func(t *testing.T, attrs []byte, id byte) {
		p, ok := mk(id, 0, attrs)
		if !ok {
			return
		}
		parseAcct(p, n, src, time.Unix(0, 0))
		want, wantRID := a.identity(n, p, src, 0), recordID(n, p, src)
		resent, ok := mk(id+1, 9, attrs, []byte{attrAcctDelayTime, 6, 0, 0, 0, 30}, []byte{attrProxyState, 4, 'h', 'x'})
		if ok && a.identity(n, resent, netip.MustParseAddrPort("127.0.0.1:4000"), 7) != want {
			t.Fatal("a resent copy has another identity")
		}
		if ok && recordID(n, resent, netip.MustParseAddrPort("127.0.0.1:4000")) != wantRID {
			t.Fatal("a resent copy has another record id")
		}
		other, ok := mk(id, 0, attrs, []byte{attrAcctSessionTime, 6, 0, 0, 0, id})
		if ok && a.identity(n, other, src, 0) == want {
			t.Fatal("an added attribute left the identity unchanged")
		}
		if ok && recordID(n, other, src) == wantRID {
			t.Fatal("an added attribute left the record id unchanged")
		}
	})
}

var attrSessionIDSeed = []byte{attrAcctSessionID, 4, 's', '1'}

// BenchmarkAcctDuplicateCheck: the per-request cost of the duplicate
// check (identity of a typical Interim-Update and one look-up in a full
// table); zero allocations.
func BenchmarkAcctDuplicateCheck(b *testing.B) {
	var a acctSeen
	a.init()
	now := time.Now()
	for i := range acctSeenMax {
		req := &acctReq{}
		a.claim(acctID{uint64(i), 1}, req, now)
		a.done(acctID{uint64(i), 1}, req, true, now)
	}
	n := &nas{name: "ap"}
	p, err := parsePacket(acctSpec{status: rfc2866.AcctStatusType_Value_InterimUpdate, session: "0123456789ABCDEF", nasID: "ap-3.floor-2",
		sessionTime: 600, inOctets: 123456, event: 1764633600, delay: 2}.encode(b, []byte(testSecret)))
	if err != nil {
		b.Fatal(err)
	}
	src := netip.MustParseAddrPort("127.0.0.1:1813")
	b.ReportAllocs()
	for b.Loop() {
		a.recorded(a.identity(n, p, src, 0), now)
	}
}

// TestRecordID: the record_id that the PostgreSQL store keeps one row per
// agrees with the node's own de-duplication on every key case (equal for
// a copy, different for two records, none when the request names no
// event), is the same on every node (it is not seeded), and differs
// between client entries.
func TestRecordID(t *testing.T) {
	n := &nas{name: "lo"}
	parse := func(a acctSpec) packet {
		t.Helper()
		p, err := parsePacket(a.encode(t, []byte(testSecret)))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	src := netip.MustParseAddrPort("127.0.0.1:4000")
	for _, c := range acctKeyCases {
		src2 := netip.MustParseAddrPort("127.0.0.1:5000")
		if c.from2 != "" {
			src2 = netip.AddrPortFrom(netip.MustParseAddr(c.from2), 5000)
		}
		a, b := recordID(n, parse(c.first), src), recordID(n, parse(c.second), src2)
		named := c.first.session != "" || c.first.event != 0
		switch {
		case !named && (a != "" || b != ""):
			t.Errorf("%s: record ids %q %q for requests naming no event", c.name, a, b)
		case named && len(a) != 32:
			t.Errorf("%s: record id %q", c.name, a)
		case named && (a == b) != (c.want == 1):
			t.Errorf("%s: ids equal %v, but %d record(s)", c.name, a == b, c.want)
		}
	}
	rec := acctSpec{status: acctStart, session: "s", id: 1, nasID: "ap"}
	// Pinned: another node (another process) computes the same.
	if got, want := recordID(n, parse(rec), src), "01cb858e05c3086f8187ee8b8adf0de6"; got != want {
		t.Errorf("record id %s, want %s (it must not depend on the process)", got, want)
	}
	if recordID(&nas{name: "other"}, parse(rec), src) == recordID(n, parse(rec), src) {
		t.Error("two client entries, one record id")
	}
}

// TestAccountingCopyOnAnotherNode: an access point fails over to another
// node and resends its last record there (new Identifier, Acct-Delay-Time
// grown). Each node acknowledges and spools its copy; the PostgreSQL store
// keeps one row per record_id, so the session's Stop is stored once.
func TestAccountingCopyOnAnotherNode(t *testing.T) {
	_, store := pgStore(t)
	type node struct {
		*testServer
		sp *spool.Spool
	}
	start := func(name string) node {
		sp := startSpool(t, spool.Config{Dir: t.TempDir(), Node: name}, store)
		s := startServerWith(t, func(s *Server) { s.SetShared(wifi.Node{Spool: sp, Store: store}) }, func(c *Config) {
			c.Accounting = AccountingStore
		})
		return node{s, sp}
	}
	a, b := start("a"), start("b")
	send := func(n node, r acctSpec) {
		t.Helper()
		if acctFrom(t, "127.0.0.1:0", n.AcctAddr(), r.encode(t, []byte(testSecret)), 5*time.Second) == nil {
			t.Fatal("no answer")
		}
	}
	begin, stop := acctSpec{status: acctStart, session: "failover", id: 1, nasID: "ap-1"},
		acctSpec{status: rfc2866.AcctStatusType_Value_Stop, session: "failover", id: 2, nasID: "ap-1", sessionTime: 300, inOctets: 7000}
	send(a, begin)
	send(a, stop)
	stop.id, stop.delay = 9, 12 // the same Stop, resent to node b
	send(b, stop)
	// Acknowledged means spooled; drained means applied to PostgreSQL
	// (node b's copy included, whatever the store made of it).
	for _, n := range []node{a, b} {
		waitUntil(t, "the spool to drain", 20*time.Second, func() bool { return n.sp.Stats().Records == 0 })
	}
	rows, err := store.Accounting(context.Background(), "failover")
	if err != nil {
		t.Fatal(err)
	}
	var stops int
	for _, r := range rows {
		if r.Acct.Status == "stop" {
			stops++
		}
		if r.Acct.RecordID == "" {
			t.Errorf("row %s without record_id", r.Key)
		}
	}
	if len(rows) != 2 || stops != 1 {
		t.Fatalf("%d rows (%d stops), want start and one stop", len(rows), stops)
	}
}
