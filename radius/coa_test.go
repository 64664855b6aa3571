package radius

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"
	"layeh.com/radius/rfc2868"

	"github.com/gatehouse/gatehouse/policy"
)

// fakeNAS is a NAS's dynamic authorization server (RFC 5176) on
// 127.0.0.1: it checks every request's Request Authenticator and
// Message-Authenticator with the shared secret, records the valid ones and
// answers ACK, NAK or nothing.
type fakeNAS struct {
	conn   *net.UDPConn
	secret []byte
	mode   atomic.Int32 // nasACK, nasNAK, nasSilent, nasNAKNoSession
	reqs   chan nasRequest
	bad    atomic.Int64 // requests failing a check
	done   chan struct{}
}

const (
	nasACK = iota
	nasNAK
	nasSilent
	nasNAKNoSession
)

type nasRequest struct {
	at  time.Time
	pkt *layeh.Packet
	raw []byte
}

func newFakeNAS(t testing.TB, secret string) *fakeNAS {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNAS{conn: c, secret: []byte(secret), reqs: make(chan nasRequest, 64), done: make(chan struct{})}
	go f.serve()
	t.Cleanup(func() {
		c.Close()
		<-f.done
	})
	return f
}

func (f *fakeNAS) port() int { return f.conn.LocalAddr().(*net.UDPAddr).Port }

func (f *fakeNAS) serve() {
	defer close(f.done)
	buf := make([]byte, 4096)
	for {
		n, from, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		raw := append([]byte(nil), buf[:n]...)
		if err := f.check(raw); err != nil {
			f.bad.Add(1)
			continue
		}
		pkt, err := layeh.Parse(raw, f.secret)
		if err != nil {
			f.bad.Add(1)
			continue
		}
		select {
		case f.reqs <- nasRequest{at: time.Now(), pkt: pkt, raw: raw}:
		default:
		}
		var reply []byte
		switch f.mode.Load() {
		case nasACK:
			reply = f.answer(raw, raw[0]+1, 0)
		case nasNAK:
			reply = f.answer(raw, raw[0]+2, 501) // Administratively-Prohibited
		case nasNAKNoSession:
			reply = f.answer(raw, raw[0]+2, errorCauseNoSession)
		}
		if reply != nil {
			f.conn.WriteToUDPAddrPort(reply, from)
		}
	}
}

// check verifies a request independently of the code under test: the
// Request Authenticator (layeh) and a Message-Authenticator that must be
// the first attribute, computed over a zeroed authenticator field.
func (f *fakeNAS) check(raw []byte) error {
	if len(raw) < 38 || (raw[0] != byte(layeh.CodeDisconnectRequest) && raw[0] != byte(layeh.CodeCoARequest)) {
		return errors.New("not a Disconnect- or CoA-Request")
	}
	if !layeh.IsAuthenticRequest(raw, f.secret) {
		return errors.New("bad Request Authenticator")
	}
	if raw[20] != 80 || raw[21] != 18 {
		return errors.New("Message-Authenticator is not the first attribute")
	}
	c := append([]byte(nil), raw...)
	clear(c[4:20])
	clear(c[22:38])
	h := hmac.New(md5.New, f.secret)
	h.Write(c)
	if !hmac.Equal(h.Sum(nil), raw[22:38]) {
		return errors.New("bad Message-Authenticator")
	}
	return nil
}

// answer builds an ACK or NAK with a Message-Authenticator (computed with
// the Request Authenticator) and the Response Authenticator.
func (f *fakeNAS) answer(req []byte, code byte, cause uint32) []byte {
	b := []byte{code, req[1], 0, 0}
	b = append(b, req[4:20]...)
	b = append(b, 80, 18)
	b = append(b, make([]byte, 16)...)
	if cause != 0 {
		b = append(b, 101, 6)
		b = binary.BigEndian.AppendUint32(b, cause)
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	h := hmac.New(md5.New, f.secret)
	h.Write(b)
	copy(b[22:38], h.Sum(nil))
	m := md5.New()
	m.Write(b)
	m.Write(f.secret)
	copy(b[4:20], m.Sum(nil))
	return b
}

// next waits for the next valid request.
func (f *fakeNAS) next(t testing.TB, wait time.Duration) nasRequest {
	t.Helper()
	select {
	case r := <-f.reqs:
		return r
	case <-time.After(wait):
		t.Fatal("fake NAS: no request")
		return nasRequest{}
	}
}

// none checks that no request arrived.
func (f *fakeNAS) none(t testing.TB) {
	t.Helper()
	select {
	case r := <-f.reqs:
		t.Fatalf("fake NAS: unexpected %v", r.pkt.Code)
	default:
	}
}

// logBuf collects JSON log records.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) records(event string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["event"] == event {
			out = append(out, m)
		}
	}
	return out
}

// switchAuth delegates to fakeAuth unless a decision is forced.
type switchAuth struct {
	*fakeAuth
	forced atomic.Pointer[policy.Decision]
}

func (a *switchAuth) Authorize(ctx context.Context, chain []*x509.Certificate) policy.Decision {
	if d := a.forced.Load(); d != nil {
		return *d
	}
	return a.fakeAuth.Authorize(ctx, chain)
}

func (a *fakeAuth) setRule(cn string, w policy.WiFi) {
	a.mu.Lock()
	a.rules[cn] = w
	a.mu.Unlock()
}

type dynServer struct {
	*Server
	auth *switchAuth
	nas  *fakeNAS
	log  *logBuf
	pki  *testPKI
}

// startDynServer runs a server whose client 127.0.0.0/8 has its dynamic
// authorization port at a fake NAS.
func startDynServer(t *testing.T, mod func(*Config)) *dynServer {
	t.Helper()
	p := getPKI(t)
	nas := newFakeNAS(t, testSecret)
	port := nas.port()
	cfg := Config{
		Listen:           "127.0.0.1:0",
		AccountingListen: "127.0.0.1:0",
		Workers:          4,
		Clients:          []ClientConfig{{Name: "lo", Network: "127.0.0.0/8", Secret: testSecret, CoAPort: &port}},
		RevalidateEvery:  policy.Duration{Duration: -1},
		DynAuthTimeout:   policy.Duration{Duration: 100 * time.Millisecond},
	}
	if mod != nil {
		mod(&cfg)
	}
	auth := &switchAuth{fakeAuth: newFakeAuth(p)}
	lb := &logBuf{}
	leakCheck(t)
	s, err := New(cfg, auth, p.serverTLS(), slog.New(slog.NewJSONHandler(lb, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	if s.Addr() == nil {
		t.Fatal(<-done)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &dynServer{Server: s, auth: auth, nas: nas, log: lb, pki: p}
}

const testStation = "02-11-22-33-44-55"

// login authenticates alice over EAP-TLS and returns the Access-Accept.
func (s *dynServer) login(t *testing.T) *layeh.Packet {
	t.Helper()
	c := &testServer{Server: s.Server}
	cl := c.client(testSecret)
	cl.CallingStationID = testStation
	res, err := cl.Authenticate(context.Background(), "anonymous@example.com", s.pki.clientTLS(&s.pki.alice, 0))
	if err != nil || !res.Accepted {
		t.Fatalf("authenticate: %v %+v", err, res)
	}
	return res.Reply
}

// acct sends an Accounting-Request and waits for the answer.
func (s *dynServer) acct(t *testing.T, status rfc2866.AcctStatusType, session, user string, class [][]byte) {
	t.Helper()
	p := layeh.New(layeh.CodeAccountingRequest, []byte(testSecret))
	rfc2866.AcctStatusType_Set(p, status)
	rfc2866.AcctSessionID_SetString(p, session)
	rfc2865.UserName_SetString(p, user)
	rfc2865.CallingStationID_SetString(p, testStation)
	rfc2865.NASIPAddress_Set(p, net.IPv4(127, 0, 0, 1))
	rfc2865.NASIdentifier_SetString(p, "ap-1")
	rfc2865.FramedIPAddress_Set(p, net.IPv4(10, 10, 0, 7))
	for _, c := range class {
		p.Add(rfc2865.Class_Type, c)
	}
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	conn := dial(t, s.AcctAddr())
	if r := rawExchange(t, conn, b, time.Second); r == nil || r[0] != codeAccountingResponse {
		t.Fatal("no Accounting-Response")
	}
}

func classes(p *layeh.Packet) [][]byte {
	var out [][]byte
	for _, a := range p.Attributes {
		if a.Type == rfc2865.Class_Type {
			out = append(out, a.Attribute)
		}
	}
	return out
}

func wantLive(t *testing.T, s *Server, pending, live int) {
	t.Helper()
	if p, l := s.WiFiSessions(); p != pending || l != live {
		t.Fatalf("Wi-Fi sessions: %d pending, %d live; want %d, %d", p, l, pending, live)
	}
}

// TestRevocationDisconnect is the whole path: EAP-TLS accept with a Class
// token, Accounting-Start echoing it, the user loses the rule, Revalidate
// sends a Disconnect-Request naming the session, the NAS ACKs, the session
// is forgotten.
func TestRevocationDisconnect(t *testing.T) {
	s := startDynServer(t, nil)
	reply := s.login(t)
	cls := classes(reply)
	if len(cls) != 2 || string(cls[0]) != "engineering" || !strings.HasPrefix(string(cls[1]), classPrefix) || len(cls[1]) != classLen {
		t.Fatalf("Class attributes %q: want the rule's and a gatehouse token", cls)
	}
	user := rfc2865.UserName_GetString(reply)
	wantLive(t, s.Server, 1, 0)
	s.acct(t, rfc2866.AcctStatusType_Value_Start, "sess-42", user, cls)
	wantLive(t, s.Server, 0, 1)

	s.Revalidate(context.Background()) // still allowed: nothing sent
	s.nas.none(t)

	s.auth.deleteRule("Alice Example")
	revoked := time.Now()
	s.Revalidate(context.Background())
	r := s.nas.next(t, time.Second)
	took := r.at.Sub(revoked)
	t.Logf("revocation-to-Disconnect-Request: %v (Revalidate returned after %v)", took, time.Since(revoked))
	if r.pkt.Code != layeh.CodeDisconnectRequest {
		t.Fatalf("code %v", r.pkt.Code)
	}
	if got := rfc2866.AcctSessionID_GetString(r.pkt); got != "sess-42" {
		t.Errorf("Acct-Session-Id %q", got)
	}
	if got := rfc2865.UserName_GetString(r.pkt); got != user || user != "Alice Example" {
		t.Errorf("User-Name %q, want %q", got, user)
	}
	if got := rfc2865.CallingStationID_GetString(r.pkt); got != testStation {
		t.Errorf("Calling-Station-Id %q", got)
	}
	if got := rfc2865.NASIdentifier_GetString(r.pkt); got != "ap-1" {
		t.Errorf("NAS-Identifier %q", got)
	}
	if got := rfc2865.NASIPAddress_Get(r.pkt); !got.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("NAS-IP-Address %v", got)
	}
	if s.nas.bad.Load() != 0 {
		t.Errorf("%d requests failed the NAS's checks", s.nas.bad.Load())
	}
	wantLive(t, s.Server, 0, 0)
	recs := s.log.records("disconnect")
	if len(recs) != 1 || recs[0]["result"] != "ack" || recs[0]["session"] != "sess-42" || recs[0]["user"] != user ||
		recs[0]["nas"] != "lo" || !strings.HasPrefix(recs[0]["reason"].(string), "no_rule") || recs[0]["level"] != "INFO" {
		t.Errorf("log records %v", recs)
	}
	if st := s.DynAuthStats(); st.Sent[0] != 1 || st.ACKs[0] != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestCoAChangesVLAN: a changed VLAN gives a CoA-Request to a CoA-capable
// NAS, a Disconnect-Request otherwise (or when the CoA is refused).
func TestCoAChangesVLAN(t *testing.T) {
	for _, tc := range []struct {
		name     string
		coa      bool
		mode     int32
		wantCode []layeh.Code
		live     int
	}{
		{"coa ack", true, nasACK, []layeh.Code{layeh.CodeCoARequest}, 1},
		{"coa nak falls back to disconnect", true, nasNAK, []layeh.Code{layeh.CodeCoARequest, layeh.CodeDisconnectRequest}, 1},
		{"no coa: disconnect", false, nasACK, []layeh.Code{layeh.CodeDisconnectRequest}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startDynServer(t, func(c *Config) { c.Clients[0].CoA = tc.coa })
			s.nas.mode.Store(tc.mode)
			reply := s.login(t)
			s.acct(t, rfc2866.AcctStatusType_Value_Start, "sess-7", rfc2865.UserName_GetString(reply), classes(reply))
			s.auth.setRule("Alice Example", policy.WiFi{VLAN: "20", SessionTimeout: 8 * time.Hour, Class: "engineering"})
			s.Revalidate(context.Background())
			for i, code := range tc.wantCode {
				r := s.nas.next(t, time.Second)
				if r.pkt.Code != code {
					t.Fatalf("request %d: %v, want %v", i, r.pkt.Code, code)
				}
				if code != layeh.CodeCoARequest {
					continue
				}
				if tag, v := rfc2868.TunnelPrivateGroupID_GetString(r.pkt); v != "20" || tag != 0 {
					t.Errorf("Tunnel-Private-Group-Id %q tag %d", v, tag)
				}
				if _, typ := rfc2868.TunnelType_Get(r.pkt); typ != 13 {
					t.Errorf("Tunnel-Type %v", typ)
				}
				if got := rfc2866.AcctSessionID_GetString(r.pkt); got != "sess-7" {
					t.Errorf("Acct-Session-Id %q", got)
				}
				if rfc2865.SessionTimeout_Get(r.pkt) != 8*3600 {
					t.Errorf("Session-Timeout %v", rfc2865.SessionTimeout_Get(r.pkt))
				}
				if len(classes(r.pkt)) != 0 {
					t.Errorf("CoA-Request carries Class")
				}
			}
			s.nas.none(t)
			wantLive(t, s.Server, 0, tc.live)
			if tc.name == "coa ack" {
				s.Revalidate(context.Background()) // the new VLAN is recorded: nothing more to send
				s.nas.none(t)
				if recs := s.log.records("coa"); len(recs) != 1 || recs[0]["vlan"] != "20" || recs[0]["old_vlan"] != "10" {
					t.Errorf("coa log %v", recs)
				}
			}
		})
	}
}

func TestRevalidateUnknownKeepsSession(t *testing.T) {
	s := startDynServer(t, nil)
	reply := s.login(t)
	s.acct(t, rfc2866.AcctStatusType_Value_Start, "sess-1", rfc2865.UserName_GetString(reply), classes(reply))
	for _, c := range []policy.Code{policy.CodeDirectoryUnavailable, policy.CodeRevocationUnknown, policy.CodePolicyUnavailable} {
		s.auth.forced.Store(&policy.Decision{Code: c, Reason: "outage"})
		s.Revalidate(context.Background())
		s.nas.none(t)
		wantLive(t, s.Server, 0, 1)
	}
	s.auth.forced.Store(&policy.Decision{Code: policy.CodeRevoked, Reason: "serial 12 revoked"})
	s.Revalidate(context.Background())
	if r := s.nas.next(t, time.Second); r.pkt.Code != layeh.CodeDisconnectRequest {
		t.Fatalf("code %v", r.pkt.Code)
	}
	wantLive(t, s.Server, 0, 0)
}

func TestAccountingLinksSessions(t *testing.T) {
	t.Run("stop removes", func(t *testing.T) {
		s := startDynServer(t, nil)
		reply := s.login(t)
		user := rfc2865.UserName_GetString(reply)
		s.acct(t, rfc2866.AcctStatusType_Value_Start, "sess-1", user, classes(reply))
		s.acct(t, rfc2866.AcctStatusType_Value_InterimUpdate, "sess-1", user, nil) // by Acct-Session-Id
		wantLive(t, s.Server, 0, 1)
		s.acct(t, rfc2866.AcctStatusType_Value_Stop, "sess-1", user, classes(reply))
		wantLive(t, s.Server, 0, 0)
	})
	t.Run("fallback without Class", func(t *testing.T) {
		s := startDynServer(t, nil)
		reply := s.login(t)
		s.acct(t, rfc2866.AcctStatusType_Value_Start, "sess-2", "someone-else", nil)
		wantLive(t, s.Server, 1, 0) // wrong user: not linked
		s.acct(t, rfc2866.AcctStatusType_Value_Start, "sess-2", rfc2865.UserName_GetString(reply), nil)
		wantLive(t, s.Server, 0, 1)
		s.auth.deleteRule("Alice Example")
		s.Revalidate(context.Background())
		if r := s.nas.next(t, time.Second); rfc2866.AcctSessionID_GetString(r.pkt) != "sess-2" {
			t.Fatalf("session %q", rfc2866.AcctSessionID_GetString(r.pkt))
		}
	})
	t.Run("pending accept disconnected too", func(t *testing.T) {
		s := startDynServer(t, nil)
		s.login(t)
		s.auth.deleteRule("Alice Example")
		s.Revalidate(context.Background())
		r := s.nas.next(t, time.Second)
		if rfc2865.CallingStationID_GetString(r.pkt) != testStation || rfc2865.UserName_GetString(r.pkt) != "Alice Example" ||
			rfc2866.AcctSessionID_GetString(r.pkt) != "" {
			t.Errorf("request %v", r.pkt.Attributes)
		}
		wantLive(t, s.Server, 0, 0)
	})
	t.Run("no coa_port: not tracked", func(t *testing.T) {
		s := startDynServer(t, func(c *Config) { zero := 0; c.Clients[0].CoAPort = &zero })
		reply := s.login(t)
		if n := len(classes(reply)); n != 1 {
			t.Errorf("%d Class attributes, want only the rule's", n)
		}
		wantLive(t, s.Server, 0, 0)
	})
}

func TestDisconnectNoAnswer(t *testing.T) {
	s := startDynServer(t, func(c *Config) { c.DynAuthRetries = 2 })
	s.nas.mode.Store(nasSilent)
	s.login(t)
	s.auth.deleteRule("Alice Example")
	start := time.Now()
	s.Revalidate(context.Background())
	took := time.Since(start)
	for range 3 { // first try + 2 retries, the same bytes
		s.nas.next(t, time.Second)
	}
	s.nas.none(t)
	if took < 250*time.Millisecond {
		t.Errorf("gave up after %v: want 3 × 100ms", took)
	}
	recs := s.log.records("disconnect")
	if len(recs) != 1 || recs[0]["result"] != "timeout" || recs[0]["attempts"] != float64(3) {
		t.Errorf("log %v", recs)
	}
	wantLive(t, s.Server, 1, 0) // kept: tried again at the next run
	if st := s.DynAuthStats(); st.Timeouts[0] != 1 {
		t.Errorf("stats %+v", st)
	}
	// A NAK saying the NAS has no such session forgets it.
	s.nas.mode.Store(nasNAKNoSession)
	s.Revalidate(context.Background())
	s.nas.next(t, time.Second)
	wantLive(t, s.Server, 0, 0)
}

// TestRevalidateCancel: a cancelled context ends a run waiting for a
// silent NAS at once.
func TestRevalidateCancel(t *testing.T) {
	s := startDynServer(t, func(c *Config) { c.DynAuthTimeout = policy.Duration{Duration: 10 * time.Second} })
	s.nas.mode.Store(nasSilent)
	s.login(t)
	s.auth.deleteRule("Alice Example")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Revalidate(ctx); close(done) }()
	s.nas.next(t, time.Second)
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Revalidate did not return after cancel")
	}
}

// TestPeriodicRevalidation: revalidate_every drives the loop.
func TestPeriodicRevalidation(t *testing.T) {
	s := startDynServer(t, func(c *Config) { c.RevalidateEvery = policy.Duration{Duration: time.Second} })
	s.login(t)
	s.auth.deleteRule("Alice Example")
	if r := s.nas.next(t, 3*time.Second); r.pkt.Code != layeh.CodeDisconnectRequest {
		t.Fatalf("code %v", r.pkt.Code)
	}
}

func TestDynTarget(t *testing.T) {
	tbl := newNASTable([]client{
		{name: "aps", prefix: netip.MustParsePrefix("10.1.0.0/16"), secret: []byte("a"), dyn: clientDyn{port: 3799, nasIP: true}},
		{name: "other", prefix: netip.MustParsePrefix("10.2.0.0/16"), secret: []byte("b"), dyn: clientDyn{port: 3799, nasIP: true}},
		{name: "off", prefix: netip.MustParsePrefix("10.3.0.0/16"), secret: []byte("c")},
	})
	aps, off := tbl.lookup(netip.MustParseAddr("10.1.0.1")), tbl.lookup(netip.MustParseAddr("10.3.0.1"))
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name  string
		info  sessionInfo
		want  string
		valid bool
	}{
		{"source", sessionInfo{nas: aps, nasAddr: a("10.1.2.3")}, "10.1.2.3:3799", true},
		{"nas-ip inside", sessionInfo{nas: aps, nasAddr: a("10.1.2.3"), nasIP: a("10.1.9.9")}, "10.1.9.9:3799", true},
		{"nas-ip of another client ignored", sessionInfo{nas: aps, nasAddr: a("10.1.2.3"), nasIP: a("10.2.0.1")}, "10.1.2.3:3799", true},
		{"nas-ip outside ignored", sessionInfo{nas: aps, nasAddr: a("10.1.2.3"), nasIP: a("192.0.2.1")}, "10.1.2.3:3799", true},
		{"mapped source", sessionInfo{nas: aps, nasAddr: a("::ffff:10.1.2.3")}, "10.1.2.3:3799", true},
		{"no coa port", sessionInfo{nas: off, nasAddr: a("10.3.0.1")}, "", false},
	} {
		got, ok := dynTarget(tbl, &tc.info)
		if ok != tc.valid || (ok && got.String() != tc.want) {
			t.Errorf("%s: %v %v, want %v %v", tc.name, got, ok, tc.want, tc.valid)
		}
	}
}

// acctPacket builds a parsed Accounting-Request for table tests.
func acctPacket(t testing.TB, status uint32, session, user, station string, class ...string) packet {
	p := layeh.New(layeh.CodeAccountingRequest, []byte(testSecret))
	rfc2866.AcctStatusType_Set(p, rfc2866.AcctStatusType(status))
	if session != "" {
		rfc2866.AcctSessionID_SetString(p, session)
	}
	rfc2865.UserName_SetString(p, user)
	if station != "" {
		rfc2865.CallingStationID_SetString(p, station)
	}
	for _, c := range class {
		p.Add(rfc2865.Class_Type, []byte(c))
	}
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	pk, err := parsePacket(b)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

func TestLiveTable(t *testing.T) {
	n := &nas{name: "ap", prefix: netip.MustParsePrefix("127.0.0.0/8"), dyn: clientDyn{port: 3799}}
	src := netip.MustParseAddr("127.0.0.1")
	t0 := time.Unix(1_700_000_000, 0)
	d := &policy.Decision{Allowed: true, Rule: "r", Chain: []*x509.Certificate{{}}}
	accept := func(tb *liveTable, station string, at time.Time) string {
		req := acctPacket(t, 1, "", "anon", station) // any packet with User-Name and Calling-Station-Id
		cls, _, ok := tb.accept(n, src, req, "alice", d, at)
		if !ok {
			t.Fatal("accept")
		}
		return cls
	}
	count := func(tb *liveTable) [2]int { p, l := tb.len(); return [2]int{p, l} }

	tb := newLiveTable(2)
	c1 := accept(tb, "s1", t0)
	accept(tb, "s2", t0.Add(time.Second))
	tb.account(n, src, acctPacket(t, 1, "A", "alice", "s1", c1), t0.Add(2*time.Second))
	accept(tb, "s3", t0.Add(3*time.Second)) // full: evicts the pending s2, not the live s1
	if got := count(tb); got != [2]int{1, 1} {
		t.Fatalf("after eviction %v", got)
	}
	tb.expire(t0.Add(3*time.Second + pendingTTL)) // s3 pending too long; s1 live without interim: kept
	if got := count(tb); got != [2]int{0, 1} {
		t.Fatalf("after pending expiry %v", got)
	}
	// Interim updates every 5 minutes: stale after 10 without one.
	tb.account(n, src, acctPacket(t, 3, "A", "alice", "s1"), t0.Add(5*time.Minute))
	tb.account(n, src, acctPacket(t, 3, "A", "alice", "s1"), t0.Add(10*time.Minute))
	tb.expire(t0.Add(19 * time.Minute))
	if got := count(tb); got != [2]int{0, 1} {
		t.Fatalf("expired too early %v", got)
	}
	tb.expire(t0.Add(21 * time.Minute))
	if got := count(tb); got != [2]int{0, 0} {
		t.Fatalf("stale session kept %v", got)
	}

	// No interim at all: defaultMaxAge.
	tb = newLiveTable(10)
	c1 = accept(tb, "s1", t0)
	tb.account(n, src, acctPacket(t, 1, "A", "alice", "s1", c1), t0)
	tb.expire(t0.Add(defaultMaxAge - time.Minute))
	if got := count(tb); got != [2]int{0, 1} {
		t.Fatalf("%v", got)
	}
	tb.expire(t0.Add(defaultMaxAge + time.Minute))
	if got := count(tb); got != [2]int{0, 0} {
		t.Fatalf("%v", got)
	}

	// How accounting is linked: Class token, then Acct-Session-Id, then station and user.
	tb = newLiveTable(10)
	c1 = accept(tb, "s1", t0)
	accept(tb, "s2", t0)
	for _, tc := range []struct {
		p    packet
		want string
	}{
		{acctPacket(t, 1, "A", "alice", "s1", c1), "class"},
		{acctPacket(t, 3, "A", "alice", "other"), "session"},
		{acctPacket(t, 1, "B", "bob", "s2"), ""},
		{acctPacket(t, 1, "B", "alice", "s2"), "station"},
		{acctPacket(t, 1, "C", "alice", "s9"), ""},
	} {
		if got := tb.account(n, src, tc.p, t0); got != tc.want {
			t.Errorf("linked by %q, want %q", got, tc.want)
		}
	}

	// Re-authentication: the new accept takes over the Acct-Session-Id.
	tb = newLiveTable(10)
	c1 = accept(tb, "s1", t0)
	tb.account(n, src, acctPacket(t, 1, "A", "alice", "s1", c1), t0)
	c2 := accept(tb, "s1", t0.Add(time.Hour))
	tb.account(n, src, acctPacket(t, 3, "A", "alice", "s1", c2), t0.Add(time.Hour))
	if got := count(tb); got != [2]int{0, 1} {
		t.Fatalf("after re-authentication %v", got)
	}
	// Accounting-On from the NAS: every session of it is gone.
	accept(tb, "s9", t0.Add(time.Hour))
	tb.account(n, src, acctPacket(t, 7, "", "", ""), t0.Add(time.Hour))
	if got := count(tb); got != [2]int{0, 0} {
		t.Fatalf("after Accounting-On %v", got)
	}
	if len(tb.bySession)+len(tb.byStation)+len(tb.byToken) != 0 {
		t.Errorf("index entries left: %d %d %d", len(tb.bySession), len(tb.byStation), len(tb.byToken))
	}
}

func TestDynAuthConfig(t *testing.T) {
	port := func(p int) *int { return &p }
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		err  string
		port uint16
	}{
		{"defaults", func(*Config) {}, "", 3799},
		{"port", func(c *Config) { c.Clients[0].CoAPort = port(1700) }, "", 1700},
		{"off", func(c *Config) { c.Clients[0].CoAPort = port(0) }, "", 0},
		{"negative off", func(c *Config) { c.Clients[0].CoAPort = port(-1) }, "", 0},
		{"port too big", func(c *Config) { c.Clients[0].CoAPort = port(70000) }, "coa_port", 0},
		{"revalidate too often", func(c *Config) { c.RevalidateEvery = policy.Duration{Duration: time.Millisecond} }, "revalidate_every", 0},
		{"bad timeout", func(c *Config) { c.DynAuthTimeout = policy.Duration{Duration: -time.Second} }, "dynauth_timeout", 0},
		{"many retries", func(c *Config) { c.DynAuthRetries = 11 }, "dynauth_retries", 0},
		{"bad max", func(c *Config) { c.MaxWiFiSessions = -1 }, "max_wifi_sessions", 0},
	} {
		c := Config{Clients: []ClientConfig{{Name: "ap", Network: "10.0.0.0/8", Secret: "s"}}}
		tc.mod(&c)
		s, err := c.settings()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if s.clients[0].dyn.port != tc.port {
			t.Errorf("%s: port %d", tc.name, s.clients[0].dyn.port)
		}
		if tc.name == "defaults" && (s.dyn.revalidateEvery != time.Minute || s.dyn.timeout != 2*time.Second || s.dyn.retries != 2 || s.dyn.maxSessions != 65536) {
			t.Errorf("defaults %+v", s.dyn)
		}
	}
}

// TestDynRequestVector checks the encoding against layeh's independent
// parser and authenticator check.
func TestDynRequestVector(t *testing.T) {
	info := &sessionInfo{nasIP: netip.MustParseAddr("192.0.2.1"), nasID: "ap-1", userName: "alice", sessionID: "S1", station: "aa-bb"}
	wf := &policy.WiFi{VLAN: "20", FilterID: "f", Class: "dropped"}
	b, err := buildDynRequest(dynCoA, 9, info, wf, []byte(testSecret), time.Unix(1_700_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !layeh.IsAuthenticRequest(b, []byte(testSecret)) {
		t.Fatal("layeh: bad Request Authenticator")
	}
	if err := (&fakeNAS{secret: []byte(testSecret)}).check(b); err != nil {
		t.Fatal(err)
	}
	p, err := layeh.Parse(b, []byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	if p.Code != layeh.CodeCoARequest || p.Identifier != 9 || rfc2865.UserName_GetString(p) != "alice" ||
		rfc2865.FilterID_GetString(p) != "f" || len(classes(p)) != 0 || binary.BigEndian.Uint32(p.Get(55)) != 1_700_000_000 {
		t.Errorf("packet %+v", p)
	}
	// Answers: a good ACK passes; a flipped bit, a wrong code or a wrong
	// Identifier does not.
	nas := &fakeNAS{secret: []byte(testSecret)}
	ack := nas.answer(b, codeCoAACK, 0)
	if code, _, err := checkDynReply(ack, b, []byte(testSecret)); err != nil || code != codeCoAACK {
		t.Fatalf("ACK: %v %v", code, err)
	}
	nak := nas.answer(b, codeCoANAK, 503)
	if code, cause, err := checkDynReply(nak, b, []byte(testSecret)); err != nil || code != codeCoANAK || cause != 503 {
		t.Fatalf("NAK: %v %v %v", code, cause, err)
	}
	for i := range ack {
		bad := append([]byte(nil), ack...)
		bad[i] ^= 0x10
		if _, _, err := checkDynReply(bad, b, []byte(testSecret)); err == nil {
			t.Errorf("flipped byte %d accepted", i)
		}
	}
	if _, _, err := checkDynReply(nas.answer(b, codeDisconnectACK, 0), b, []byte(testSecret)); err == nil {
		t.Error("Disconnect-ACK accepted for a CoA-Request")
	}
	if _, _, err := checkDynReply(ack, b, []byte("other")); err == nil {
		t.Error("wrong secret accepted")
	}
}

// FuzzDynReply: any answer is checked without panic, and only authentic
// ones pass.
func FuzzDynReply(f *testing.F) {
	info := &sessionInfo{userName: "alice", sessionID: "S1"}
	req, err := buildDynRequest(dynDisconnect, 1, info, nil, []byte(testSecret), time.Unix(0, 0))
	if err != nil {
		f.Fatal(err)
	}
	nas := &fakeNAS{secret: []byte(testSecret)}
	f.Add(nas.answer(req, codeDisconnectACK, 0))
	f.Add(nas.answer(req, codeDisconnectNAK, 503))
	f.Add([]byte{41, 1, 0, 20})
	f.Fuzz(func(t *testing.T, b []byte) {
		code, _, err := checkDynReply(b, req, []byte(testSecret))
		if err == nil && code != codeDisconnectACK && code != codeDisconnectNAK {
			t.Fatalf("accepted code %d", code)
		}
	})
}

// FuzzAccountingTrack: any Accounting-Request's attributes are linked to
// sessions without panic, and the table's indexes stay consistent.
func FuzzAccountingTrack(f *testing.F) {
	n := &nas{name: "ap", dyn: clientDyn{port: 3799}}
	src := netip.MustParseAddr("127.0.0.1")
	d := &policy.Decision{Allowed: true, Chain: []*x509.Certificate{{}}}
	f.Add([]byte{40, 6, 0, 0, 0, 1, 31, 4, 's', '1'}, uint8(0))
	f.Add([]byte{40, 6, 0, 0, 0, 2, 25, 4, 'g', 'h'}, uint8(1))
	f.Add([]byte{40, 6, 0, 0, 0, 7}, uint8(2))
	f.Fuzz(func(t *testing.T, attrs []byte, which uint8) {
		if len(attrs) > maxPacket-headerLen-classLen-2 {
			return
		}
		tb := newLiveTable(4)
		var tokens []string
		for _, st := range []string{"s1", "s2"} {
			cls, _, _ := tb.accept(n, src, acctPacket(t, 1, "", "u", st), "u", d, time.Unix(0, 0))
			tokens = append(tokens, cls)
		}
		b := make([]byte, headerLen, headerLen+len(attrs)+classLen+2)
		b[0] = codeAccountingRequest
		b = append(b, attrs...)
		if which%2 == 1 {
			b = append(b, attrClass, byte(2+classLen))
			b = append(b, tokens[int(which/2)%2]...)
		}
		binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
		p, err := parsePacket(b)
		if err != nil {
			return
		}
		for i := range 3 {
			tb.account(n, src, p, time.Unix(int64(i), 0))
		}
		tb.expire(time.Unix(1e6, 0))
		for _, idx := range []map[sessionKey]*liveSession{tb.bySession, tb.byStation} {
			for k, e := range idx {
				if tb.byToken[e.token] != e {
					t.Fatalf("index %v points at a removed session", k)
				}
			}
		}
		pend, live := tb.len()
		if pend+live != len(tb.byToken) || len(tb.bySession) > len(tb.byToken) || len(tb.byStation) > len(tb.byToken) {
			t.Fatalf("inconsistent: %d+%d entries, %d tokens, %d sessions, %d stations", pend, live, len(tb.byToken), len(tb.bySession), len(tb.byStation))
		}
	})
}

// BenchmarkRevalidateDisconnect measures one Revalidate run over 1000
// revoked live sessions: re-authorization, 1000 Disconnect-Requests to a
// fake NAS on loopback and their ACKs.
func BenchmarkRevalidateDisconnect(b *testing.B) {
	const sessions = 1000
	nas := newFakeNAS(b, testSecret)
	nas.reqs = make(chan nasRequest) // unbuffered and never read: not recorded
	port := nas.port()
	p := getPKI(b)
	auth := &switchAuth{fakeAuth: newFakeAuth(p)}
	auth.forced.Store(&policy.Decision{Code: policy.CodeRevoked, Reason: "revoked"})
	s, err := New(Config{Clients: []ClientConfig{{Name: "lo", Network: "127.0.0.0/8", Secret: testSecret, CoAPort: &port}},
		MaxWiFiSessions: 2 * sessions}, auth, p.serverTLS(), nil)
	if err != nil {
		b.Fatal(err)
	}
	n := s.nas.lookup(netip.MustParseAddr("127.0.0.1"))
	src := netip.MustParseAddr("127.0.0.1")
	d := &policy.Decision{Allowed: true, Rule: "r", Chain: []*x509.Certificate{{}}}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for i := range sessions {
			st := fmt.Sprintf("02-00-00-00-%02x-%02x", i>>8, i&0xff)
			cls, _, _ := s.live.accept(n, src, acctPacket(b, 1, "", "u", st), "u", d, time.Now())
			s.live.account(n, src, acctPacket(b, 1, "S"+st, "u", st, cls), time.Now())
		}
		b.StartTimer()
		s.Revalidate(context.Background())
		if pend, live := s.live.len(); pend+live != 0 {
			b.Fatalf("%d sessions left", pend+live)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*sessions), "ns/session")
}

// TestUnreachableNASSkipped: once a NAS has not answered in a run, its
// other sessions wait for the next run instead of each timing out.
func TestUnreachableNASSkipped(t *testing.T) {
	leakCheck(t)
	nas := newFakeNAS(t, testSecret)
	nas.mode.Store(nasSilent)
	port := nas.port()
	p := getPKI(t)
	auth := &switchAuth{fakeAuth: newFakeAuth(p)}
	auth.forced.Store(&policy.Decision{Code: policy.CodeRevoked, Reason: "revoked"})
	lb := &logBuf{}
	s, err := New(Config{Clients: []ClientConfig{{Name: "lo", Network: "127.0.0.0/8", Secret: testSecret, CoAPort: &port}},
		DynAuthTimeout: policy.Duration{Duration: 50 * time.Millisecond}, DynAuthRetries: -1}, auth, p.serverTLS(), slog.New(slog.NewJSONHandler(lb, nil)))
	if err != nil {
		t.Fatal(err)
	}
	n := s.nas.lookup(netip.MustParseAddr("127.0.0.1"))
	src := netip.MustParseAddr("127.0.0.1")
	d := &policy.Decision{Allowed: true, Rule: "r", Chain: []*x509.Certificate{{}}}
	const sessions = revalidateConcurrency + 24
	for i := range sessions {
		s.live.accept(n, src, acctPacket(t, 1, "", "u", fmt.Sprintf("st-%d", i)), "u", d, time.Now())
	}
	start := time.Now()
	s.Revalidate(context.Background())
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Revalidate took %v", took)
	}
	if got := len(nas.reqs); got != revalidateConcurrency {
		t.Errorf("%d requests reached the NAS, want %d", got, revalidateConcurrency)
	}
	if st := s.DynAuthStats(); st.Timeouts[0] != revalidateConcurrency {
		t.Errorf("stats %+v", st)
	}
	lb.mu.Lock()
	logged := lb.buf.String()
	lb.mu.Unlock()
	if !strings.Contains(logged, `"skipped":24`) {
		t.Errorf("no skip warning:\n%s", logged)
	}
	if pend, _ := s.live.len(); pend != sessions {
		t.Errorf("%d sessions left, want all %d", pend, sessions)
	}
}
