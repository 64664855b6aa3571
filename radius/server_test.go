package radius

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2868"

	"github.com/gatehouse/gatehouse/radius/eap"
	"github.com/gatehouse/gatehouse/radius/radbench"
)

const testSecret = "s3cret-for-tests"

type testServer struct {
	*Server
	auth *fakeAuth
	pki  *testPKI
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("GATEHOUSE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// startServer runs a server on 127.0.0.1 ephemeral ports until the test
// ends, then checks that its goroutines are gone.
func startServer(t testing.TB, mod func(*Config)) *testServer {
	t.Helper()
	return startServerWith(t, nil, mod)
}

// startServerWith is startServer with a hook on the server before Run.
func startServerWith(t testing.TB, hook func(*Server), mod func(*Config)) *testServer {
	t.Helper()
	p := getPKI(t)
	cfg := Config{
		Listen:           "127.0.0.1:0",
		AccountingListen: "127.0.0.1:0",
		Workers:          4,
		Clients:          []ClientConfig{{Name: "lo", Network: "127.0.0.0/8", Secret: testSecret}},
	}
	if mod != nil {
		mod(&cfg)
	}
	auth := newFakeAuth(p)
	leakCheck(t)
	s, err := New(cfg, auth, p.serverTLS(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.drainTimeout = 100 * time.Millisecond // tests that stop mid-handshake
	if hook != nil {
		hook(s)
	}
	runServer(t, s)
	return &testServer{Server: s, auth: auth, pki: p}
}

// runServer runs s until the test ends; Run must then return nil.
func runServer(t testing.TB, s *Server) {
	t.Helper()
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
}

var leakChecked sync.Map // testing.TB → struct{}

// leakCheck, once per test, registers a check (run after every other
// cleanup of the test) that the goroutine count is back to where it was.
func leakCheck(t testing.TB) {
	if _, loaded := leakChecked.LoadOrStore(t, struct{}{}); loaded {
		return
	}
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		checkGoroutines(t, before)
		leakChecked.Delete(t)
	})
}

func checkGoroutines(t testing.TB, before int) {
	t.Helper()
	var n int
	for range 100 {
		n = runtime.NumGoroutine()
		if n <= before {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	buf := make([]byte, 1<<16)
	buf = buf[:runtime.Stack(buf, true)]
	t.Errorf("goroutines: %d before, %d after\n%s", before, n, buf)
}

func (s *testServer) client(secret string) *radbench.Client {
	return &radbench.Client{Addr: s.Addr().String(), Secret: []byte(secret), Timeout: 500 * time.Millisecond, Retries: 1, MAFirst: true}
}

func TestEAPTLS(t *testing.T) {
	s := startServer(t, nil)
	small := startServer(t, func(c *Config) { c.FragmentSize = 300 })
	only12 := startServer(t, func(c *Config) { c.TLSMaxVersion = "1.2" })
	p := s.pki
	tests := []struct {
		name    string
		srv     *testServer
		cert    *tls.Certificate
		max     uint16
		frag    int
		mtu     int
		accept  bool
		vlan    string
		version uint16
	}{
		{"alice tls1.3", s, &p.alice, tls.VersionTLS13, 0, 0, true, "10", tls.VersionTLS13},
		{"alice tls1.2", s, &p.alice, tls.VersionTLS12, 0, 0, true, "10", tls.VersionTLS12},
		{"alice chain tls1.3", s, &p.aliceChain, 0, 0, 0, true, "10", tls.VersionTLS13},
		{"server caps 1.2", only12, &p.alice, 0, 0, 0, true, "10", tls.VersionTLS12},
		{"device", s, &p.thermostat, 0, 0, 0, true, "30", tls.VersionTLS13},
		{"long chain 1.2", s, &p.erin, tls.VersionTLS12, 0, 0, true, "10", tls.VersionTLS12},
		{"long chain 1.3 small frags both ways", small, &p.erin, tls.VersionTLS13, 300, 0, true, "10", tls.VersionTLS13},
		{"framed-mtu 400", s, &p.aliceChain, tls.VersionTLS12, 0, 400, true, "10", tls.VersionTLS12},
		{"untrusted", s, &p.mallory, 0, 0, 0, false, "", 0},
		{"untrusted 1.2", s, &p.mallory, tls.VersionTLS12, 0, 0, false, "", 0},
		{"no rule", s, &p.frank, 0, 0, 0, false, "", 0},
		{"expired", s, &p.dave, 0, 0, 0, false, "", 0},
		{"no clientAuth EKU", s, &p.noeku, tls.VersionTLS12, 0, 0, false, "", 0},
		{"no certificate 1.3", s, nil, tls.VersionTLS13, 0, 0, false, "", 0},
		{"no certificate 1.2", s, nil, tls.VersionTLS12, 0, 0, false, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.srv.client(testSecret)
			c.FragSize, c.FramedMTU = tc.frag, tc.mtu
			res, err := c.Authenticate(context.Background(), "anonymous@example.com", p.clientTLS(tc.cert, tc.max))
			if err != nil {
				t.Fatal(err)
			}
			if res.Accepted != tc.accept {
				t.Fatalf("accepted = %v, want %v (reply %v)", res.Accepted, tc.accept, res.Reply.Code)
			}
			eapMsg := res.Reply.Get(79)
			if !tc.accept {
				if res.Reply.Code != layeh.CodeAccessReject || len(eapMsg) != 4 || eapMsg[0] != eap.CodeFailure {
					t.Fatalf("reject: code %v EAP %x", res.Reply.Code, eapMsg)
				}
				return
			}
			if res.TLS.Version != tc.version {
				t.Errorf("TLS version %x, want %x", res.TLS.Version, tc.version)
			}
			checkAccept(t, res, tc.vlan)
			if tc.mtu > 0 && res.Rounds < 5 {
				t.Errorf("only %d rounds with a small MTU", res.Rounds)
			}
		})
	}
	if st := s.Stats(); st.SessionsLive != 0 {
		t.Errorf("sessions live after all conversations: %d", st.SessionsLive)
	}
}

// checkAccept checks an Access-Accept's keys and attributes.
func checkAccept(t *testing.T, res *radbench.AuthResult, vlan string) {
	t.Helper()
	if len(res.MSK) != 64 {
		t.Fatalf("MSK length %d", len(res.MSK))
	}
	if !bytes.Equal(res.RecvKey, res.MSK[:32]) || !bytes.Equal(res.SendKey, res.MSK[32:]) {
		t.Errorf("MPPE keys do not match the MSK")
	}
	// Independent RFC 2548 decryption.
	recv := decryptMPPE(t, vsa(res.Reply, 17), []byte(testSecret), res.Request.Authenticator[:])
	send := decryptMPPE(t, vsa(res.Reply, 16), []byte(testSecret), res.Request.Authenticator[:])
	if !bytes.Equal(recv, res.MSK[:32]) || !bytes.Equal(send, res.MSK[32:]) {
		t.Errorf("independent MPPE decryption disagrees")
	}
	if tag, got := rfc2868.TunnelPrivateGroupID_GetString(res.Reply); got != vlan || tag != 0 {
		t.Errorf("Tunnel-Private-Group-Id %q, want %q", got, vlan)
	}
	if tag, typ := rfc2868.TunnelType_Get(res.Reply); tag != 0 || typ != 13 {
		t.Errorf("Tunnel-Type tag %d value %d", tag, typ)
	}
	if tag, m := rfc2868.TunnelMediumType_Get(res.Reply); tag != 0 || m != rfc2868.TunnelMediumType_Value_IEEE802 {
		t.Errorf("Tunnel-Medium-Type tag %d value %d", tag, m)
	}
	if u := rfc2865.UserName_GetString(res.Reply); u == "" || u == "anonymous@example.com" {
		t.Errorf("User-Name %q: want the certificate identity", u)
	}
	if e := res.Reply.Get(79); len(e) != 4 || e[0] != eap.CodeSuccess {
		t.Errorf("EAP %x, want Success", e)
	}
}

func vsa(p *layeh.Packet, typ byte) []byte {
	for _, a := range p.Attributes {
		if a.Type == 26 && len(a.Attribute) > 6 && a.Attribute[3] == 0x37 && a.Attribute[4] == typ {
			return a.Attribute[6:]
		}
	}
	return nil
}

// decryptMPPE is RFC 2548 section 2.4.3 written out independently.
func decryptMPPE(t *testing.T, a, secret, reqAuth []byte) []byte {
	t.Helper()
	if len(a) < 18 || (len(a)-2)%16 != 0 || a[0]&0x80 == 0 {
		t.Fatalf("bad MPPE attribute %d bytes", len(a))
	}
	salt, c := a[:2], a[2:]
	var p []byte
	prev := append(append([]byte{}, reqAuth...), salt...)
	for i := 0; i < len(c); i += 16 {
		b := md5.Sum(append(append([]byte{}, secret...), prev...))
		for j := range 16 {
			p = append(p, c[i+j]^b[j])
		}
		prev = c[i : i+16]
	}
	if int(p[0]) > len(p)-1 {
		t.Fatalf("bad MPPE key length %d", p[0])
	}
	return p[1 : 1+p[0]]
}

func TestWrongSecretDropped(t *testing.T) {
	s := startServer(t, nil)
	_, err := s.client("wrong").Authenticate(context.Background(), "x", s.pki.clientTLS(&s.pki.alice, 0))
	if !errors.Is(err, radbench.ErrNoAnswer) {
		t.Fatalf("err = %v, want no answer", err)
	}
	if st := s.Stats(); st.Drops[DropBadMA] == 0 || st.SessionsLive != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestUnknownClientDropped(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Clients[0].Network = "10.0.0.0/8" })
	_, err := s.client(testSecret).Authenticate(context.Background(), "x", s.pki.clientTLS(&s.pki.alice, 0))
	if !errors.Is(err, radbench.ErrNoAnswer) {
		t.Fatalf("err = %v, want no answer", err)
	}
	if st := s.Stats(); st.Drops[DropUnknownClient] == 0 {
		t.Errorf("stats %+v", st)
	}
}

// rawExchange sends b and returns the reply, or nil after timeout.
func rawExchange(t *testing.T, conn net.Conn, b []byte, timeout time.Duration) []byte {
	t.Helper()
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		t.Fatal(err)
	}
	return buf[:n]
}

func identityRequest(t *testing.T, withMA bool) []byte {
	req := layeh.New(layeh.CodeAccessRequest, []byte(testSecret))
	rfc2865.UserName_SetString(req, "x")
	req.Add(79, eap.AppendIdentity(nil, 7, "x"))
	if withMA {
		b, err := radbench.EncodeRequest(req)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b, err := req.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dial(t *testing.T, a net.Addr) net.Conn {
	c, err := net.Dial("udp", a.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMissingMessageAuthenticatorDropped(t *testing.T) {
	s := startServer(t, nil)
	conn := dial(t, s.Addr())
	if r := rawExchange(t, conn, identityRequest(t, false), 300*time.Millisecond); r != nil {
		t.Fatalf("answered a request without Message-Authenticator")
	}
	if st := s.Stats(); st.Drops[DropMissingMA] != 1 {
		t.Errorf("stats %+v", st)
	}
	// Garbage and truncated packets are dropped and counted too.
	for _, b := range [][]byte{{1, 2, 3}, append([]byte{1, 1, 0, 30}, make([]byte, 26)...)} {
		if r := rawExchange(t, conn, b, 100*time.Millisecond); r != nil {
			t.Fatalf("answered garbage")
		}
	}
	if st := s.Stats(); st.Drops[DropMalformed] != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestRetransmitGetsCachedReply(t *testing.T) {
	s := startServer(t, nil)
	conn := dial(t, s.Addr())
	req := identityRequest(t, true)
	r1 := rawExchange(t, conn, req, time.Second)
	r2 := rawExchange(t, conn, req, time.Second)
	if r1 == nil || !bytes.Equal(r1, r2) {
		t.Fatalf("retransmission got a different reply")
	}
	if r1[0] != codeAccessChallenge || r1[20] != attrMessageAuthenticator {
		t.Fatalf("reply code %d, first attribute %d", r1[0], r1[20])
	}
	st := s.Stats()
	if st.CacheHits != 1 || st.SessionsOpened != 1 || st.SessionsLive != 1 {
		t.Errorf("stats %+v", st)
	}

	// Mid-handshake: the ClientHello retransmitted must not advance TLS.
	reply, _ := layeh.Parse(r1, []byte(testSecret))
	peer := &eap.Peer{Identity: "x", TLS: s.pki.clientTLS(&s.pki.alice, 0)}
	defer peer.Close()
	resp, _, err := peer.Handle(reply.Get(79))
	if err != nil {
		t.Fatal(err)
	}
	hello := layeh.New(layeh.CodeAccessRequest, []byte(testSecret))
	for m := resp; len(m) > 0; m = m[min(len(m), 253):] {
		hello.Add(79, m[:min(len(m), 253)])
	}
	rfc2865.State_Set(hello, rfc2865.State_Get(reply))
	hb, _ := radbench.EncodeRequest(hello)
	h1 := rawExchange(t, conn, hb, 2*time.Second)
	h2 := rawExchange(t, conn, hb, 2*time.Second)
	if h1 == nil || !bytes.Equal(h1, h2) {
		t.Fatalf("ClientHello retransmission got a different reply")
	}
	if st := s.Stats(); st.CacheHits != 2 || st.Challenges != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestNak(t *testing.T) {
	s := startServer(t, nil)
	conn := dial(t, s.Addr())
	r1 := rawExchange(t, conn, identityRequest(t, true), time.Second)
	reply, _ := layeh.Parse(r1, []byte(testSecret))
	start, _ := eap.Parse(reply.Get(79))
	nak := layeh.New(layeh.CodeAccessRequest, []byte(testSecret))
	nak.Add(79, eap.AppendNak(nil, start.ID, 25)) // wants PEAP
	rfc2865.State_Set(nak, rfc2865.State_Get(reply))
	b, _ := radbench.EncodeRequest(nak)
	r2 := rawExchange(t, conn, b, time.Second)
	if r2 == nil || r2[0] != codeAccessReject {
		t.Fatalf("Nak answered with %v", r2)
	}
	rp, _ := layeh.Parse(r2, []byte(testSecret))
	if e := rp.Get(79); len(e) != 4 || e[0] != eap.CodeFailure || e[1] != start.ID {
		t.Errorf("EAP %x: want Failure with id %d", e, start.ID)
	}
	if err := radbench.CheckReplyMA(r2, b[4:20], []byte(testSecret)); err != nil {
		t.Error(err)
	}
}

func TestStatusServer(t *testing.T) {
	s := startServer(t, nil)
	for _, a := range []net.Addr{s.Addr(), s.AcctAddr()} {
		conn := dial(t, a)
		req := layeh.New(layeh.CodeStatusServer, []byte(testSecret))
		b, _ := radbench.EncodeRequest(req)
		r := rawExchange(t, conn, b, time.Second)
		if r == nil {
			t.Fatalf("%v: no answer to Status-Server", a)
		}
		want := byte(codeAccessAccept)
		if a == s.AcctAddr() {
			want = codeAccountingResponse
		}
		if r[0] != want || !layeh.IsAuthenticResponse(r, b, []byte(testSecret)) {
			t.Errorf("%v: reply code %d", a, r[0])
		}
		if err := radbench.CheckReplyMA(r, b[4:20], []byte(testSecret)); err != nil {
			t.Error(err)
		}
	}
}

// TestPreopenedConns: sockets handed in through AuthConn/AcctConn are used
// (and closed by Run).
func TestPreopenedConns(t *testing.T) {
	leakCheck(t)
	p := getPKI(t)
	auth, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	acct, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Clients: []ClientConfig{{Network: "127.0.0.1", Secret: testSecret}}}, newFakeAuth(p), p.serverTLS(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.AuthConn, s.AcctConn = auth, acct
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	if s.Addr().String() != auth.LocalAddr().String() || s.AcctAddr().String() != acct.LocalAddr().String() {
		t.Errorf("addresses %v %v", s.Addr(), s.AcctAddr())
	}
	for _, a := range []net.Addr{s.Addr(), s.AcctAddr()} {
		b, _ := radbench.EncodeRequest(layeh.New(layeh.CodeStatusServer, []byte(testSecret)))
		if rawExchange(t, dial(t, a), b, time.Second) == nil {
			t.Errorf("%v: no answer", a)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := auth.WriteTo([]byte{1}, auth.LocalAddr()); err == nil {
		t.Error("Run did not close AuthConn")
	}
}
