package radius

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"
	"layeh.com/radius/rfc2868"

	"github.com/gatehouse/gatehouse/policy"
)

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
	return startDynServerWith(t, nil, mod)
}

// startDynServerWith is startDynServer with a hook on the server before Run.
func startDynServerWith(t *testing.T, hook func(*Server), mod func(*Config)) *dynServer {
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
	if hook != nil {
		hook(s)
	}
	runServer(t, s)
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

// TestRuleWithoutWiFiRejected: an allowing decision whose rule has no wifi
// table (a VPN-only rule) is refused at the Wi-Fi door.
func TestRuleWithoutWiFiRejected(t *testing.T) {
	s := startDynServer(t, nil)
	s.auth.forced.Store(&policy.Decision{Allowed: true, Code: policy.CodeAllowed, Rule: "vpn-only",
		VPN: &policy.VPNAccess{}, Identity: policy.Identity{Name: "alice"}})
	c := &testServer{Server: s.Server}
	res, err := c.client(testSecret).Authenticate(context.Background(), "anonymous@example.com", s.pki.clientTLS(&s.pki.alice, 0))
	if err != nil || res.Accepted {
		t.Fatalf("want Access-Reject; err %v accepted %v", err, res.Accepted)
	}
}
