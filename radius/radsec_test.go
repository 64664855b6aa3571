package radius

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"
	"layeh.com/radius/rfc2868"
	"layeh.com/radius/vendors/microsoft"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/policytest"
	"github.com/gatehouse/gatehouse/radius/eap"
	"github.com/gatehouse/gatehouse/radius/radbench"
)

// radsecPKI is the access points' own PKI, apart from the employee CAs.
type radsecPKI struct {
	dir    string // PEM files (per test): ap-ca.pem, ap.pem/ap.key, rogue.pem/rogue.key
	ca     *policytest.CA
	ap     tls.Certificate // DNS ap-1.example.com, CN ap-1
	other  tls.Certificate // same CA, DNS printer.example.com: matches no pattern
	rogue  tls.Certificate // DNS ap-1.example.com from an untrusted CA
	apLeaf *policytest.Leaf
	files  map[string][]byte
}

var (
	rsPKIOnce sync.Once
	rsPKI     *radsecPKI
	rsPKIErr  error
)

// getRadSecPKI returns the PKI (made once per process) with its files
// written to a directory of the test's.
func getRadSecPKI(t testing.TB) *radsecPKI {
	t.Helper()
	rsPKIOnce.Do(func() { rsPKI, rsPKIErr = newRadSecPKI() })
	if rsPKIErr != nil {
		t.Fatal(rsPKIErr)
	}
	rp := *rsPKI
	rp.dir = t.TempDir()
	for name, b := range rp.files {
		if err := os.WriteFile(filepath.Join(rp.dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return &rp
}

func newRadSecPKI() (*radsecPKI, error) {
	ca, err := policytest.NewRoot("RadSec AP CA")
	if err != nil {
		return nil, err
	}
	rogueCA, err := policytest.NewRoot("Rogue AP CA")
	if err != nil {
		return nil, err
	}
	ap, err := ca.Issue(policytest.LeafOptions{CN: "ap-1", DNS: []string{"ap-1.example.com"}})
	if err != nil {
		return nil, err
	}
	other, err := ca.Issue(policytest.LeafOptions{CN: "printer", DNS: []string{"printer.example.com"}})
	if err != nil {
		return nil, err
	}
	rogue, err := rogueCA.Issue(policytest.LeafOptions{CN: "ap-1", DNS: []string{"ap-1.example.com"}})
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{"ap-ca.pem": ca.PEM, "ap.pem": ap.ChainPEM, "ap.key": ap.KeyPEM, "rogue.pem": rogue.ChainPEM, "rogue.key": rogue.KeyPEM}
	return &radsecPKI{ca: ca, ap: ap.TLSCertificate(), other: other.TLSCertificate(), rogue: rogue.TLSCertificate(), apLeaf: ap, files: files}, nil
}

type radsecServerT struct {
	*Server
	auth *switchAuth
	log  *logBuf
	pki  *testPKI
	rs   *radsecPKI
}

// startRadSec runs a server with RadSec on 127.0.0.1 and one radsec_client
// entry admitting "DNS:ap-*.example.com" certificates of the AP CA.
func startRadSec(t *testing.T, mod func(*Config)) *radsecServerT {
	t.Helper()
	p := getPKI(t)
	rp := getRadSecPKI(t)
	cfg := Config{
		Listen:           "127.0.0.1:0",
		AccountingListen: "127.0.0.1:0",
		Workers:          4,
		Clients:          []ClientConfig{{Name: "lo", Network: "127.0.0.0/8", Secret: testSecret}},
		RevalidateEvery:  policy.Duration{Duration: -1},
		DynAuthTimeout:   policy.Duration{Duration: 200 * time.Millisecond},
		RadSecConfig: RadSecConfig{
			RadSecListen:  "127.0.0.1:0",
			RadSecClients: []RadSecClientConfig{{Name: "aps", CAFile: filepath.Join(rp.dir, "ap-ca.pem"), Match: []string{"DNS:ap-*.example.com"}}},
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	auth := &switchAuth{fakeAuth: newFakeAuth(p)}
	lb := &logBuf{}
	leakCheck(t)
	var h slog.Handler = slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})
	if os.Getenv("GATEHOUSE_TEST_LOG") != "" {
		h = slog.NewJSONHandler(io.MultiWriter(lb, os.Stderr), &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	s, err := New(cfg, auth, p.serverTLS(), slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	s.drainTimeout = 100 * time.Millisecond
	runServer(t, s)
	if s.RadSecAddr() == nil {
		t.Fatal("no RadSec address")
	}
	return &radsecServerT{Server: s, auth: auth, log: lb, pki: p, rs: rp}
}

// rsConn is a RadSec client connection: a reader goroutine frames the
// server's packets into replies and Disconnect/CoA-Requests.
type rsConn struct {
	t       testing.TB
	c       *tls.Conn
	replies chan []byte
	dyn     chan []byte
	done    chan struct{} // closed when the reader ends (server closed, error)
}

func (s *radsecServerT) tlsTo(cert *tls.Certificate) *tls.Config {
	c := s.pki.clientTLS(cert, 0)
	return c
}

// dialRadSec connects and handshakes; the error is the handshake's.
func (s *radsecServerT) dialRadSec(t testing.TB, conf *tls.Config) (*rsConn, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", s.RadSecAddr().String(), conf)
	if err != nil {
		return nil, err
	}
	// A TLS 1.3 server refuses the client certificate after the client's
	// handshake is complete: the refusal shows at the first read.
	rc := &rsConn{t: t, c: c, replies: make(chan []byte, 1024), dyn: make(chan []byte, 16), done: make(chan struct{})}
	go rc.read()
	t.Cleanup(func() {
		c.Close()
		<-rc.done
	})
	return rc, nil
}

func (s *radsecServerT) mustDial(t testing.TB, cert *tls.Certificate) *rsConn {
	t.Helper()
	rc, err := s.dialRadSec(t, s.tlsTo(cert))
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func (rc *rsConn) read() {
	defer close(rc.done)
	for {
		var h [4]byte
		if _, err := io.ReadFull(rc.c, h[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(h[2:]))
		b := make([]byte, n)
		copy(b, h[:])
		if _, err := io.ReadFull(rc.c, b[4:]); err != nil {
			return
		}
		if b[0] == codeDisconnectRequest || b[0] == codeCoARequest {
			rc.dyn <- b
		} else {
			rc.replies <- b
		}
	}
}

func (rc *rsConn) write(b []byte) {
	rc.t.Helper()
	rc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatal(err)
	}
}

// next waits for a reply; nil on timeout or when the connection ended.
func (rc *rsConn) next(wait time.Duration) []byte {
	select {
	case b := <-rc.replies:
		return b
	case <-rc.done:
		select {
		case b := <-rc.replies:
			return b
		default:
			return nil
		}
	case <-time.After(wait):
		return nil
	}
}

func (rc *rsConn) exchange(b []byte) []byte {
	rc.t.Helper()
	rc.write(b)
	r := rc.next(5 * time.Second)
	if r == nil {
		rc.t.Fatal("no reply over RadSec")
	}
	return r
}

// closedByServer waits until the server closed the connection.
func (rc *rsConn) closedByServer(wait time.Duration) bool {
	select {
	case <-rc.done:
		return true
	case <-time.After(wait):
		return false
	}
}

var radsecKey = []byte(radsecSecret)

func statusServer(t testing.TB, id byte, proxyState ...[]byte) []byte {
	p := layeh.New(layeh.CodeStatusServer, radsecKey)
	p.Identifier = id
	for _, v := range proxyState {
		rfc2865.ProxyState_Add(p, v)
	}
	b, err := radbench.EncodeRequest(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func radsecAccess(tb testing.TB, id byte, msg, state []byte) []byte {
	req := layeh.New(layeh.CodeAccessRequest, radsecKey)
	req.Identifier = id
	rfc2865.UserName_SetString(req, "anonymous")
	rfc2865.CallingStationID_SetString(req, testStation)
	rfc2865.NASIdentifier_SetString(req, "ap-1")
	radbench.AddEAP(req, msg, state)
	b, err := radbench.EncodeRequest(req)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// checkReply verifies a reply's Response Authenticator and
// Message-Authenticator with the secret "radsec" and parses it.
func checkReply(t testing.TB, req, reply []byte) *layeh.Packet {
	t.Helper()
	if !layeh.IsAuthenticResponse(reply, req, radsecKey) {
		t.Fatal("Response Authenticator wrong (secret \"radsec\")")
	}
	if req[0] == byte(layeh.CodeAccountingRequest) {
		// No Message-Authenticator in an Accounting-Response over
		// RadSec (acctreply.go): radsecproxy and FreeRADIUS disagree on it.
		if len(reply) >= 22 && reply[20] == attrMessageAuthenticator {
			t.Fatal("Accounting-Response over RadSec carries a Message-Authenticator")
		}
	} else if err := radbench.CheckReplyMA(reply, req[4:20], radsecKey); err != nil {
		t.Fatal(err)
	}
	p, err := layeh.Parse(reply, radsecKey)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// loginRadSec runs a whole EAP-TLS login over rc; the final reply.
func loginRadSec(t *testing.T, rc *rsConn, conf *tls.Config) *layeh.Packet {
	t.Helper()
	peer := &eap.Peer{Identity: "anonymous@example.com", TLS: conf}
	defer peer.Close()
	msg := peer.Identify(0)
	var state []byte
	for id := byte(0); id < 60; id++ {
		req := radsecAccess(t, id, msg, state)
		rp := checkReply(t, req, rc.exchange(req))
		if rp.Code != layeh.CodeAccessChallenge {
			if rp.Code == layeh.CodeAccessAccept {
				if _, _, err := peer.Handle(eapOf(rp)); err != nil {
					t.Fatalf("Access-Accept but EAP says: %v", err)
				}
				rq, err := layeh.Parse(req, radsecKey)
				if err != nil {
					t.Fatal(err)
				}
				recv, err1 := microsoft.MSMPPERecvKey_Lookup(rp, rq)
				send, err2 := microsoft.MSMPPESendKey_Lookup(rp, rq)
				if msk := peer.MSK(); err1 != nil || err2 != nil || len(msk) != 64 || !bytes.Equal(recv, msk[:32]) || !bytes.Equal(send, msk[32:]) {
					t.Errorf("MPPE keys do not match the peer's MSK (%v, %v)", err1, err2)
				}
			}
			return rp
		}
		state = rfc2865.State_Get(rp)
		var done bool
		var err error
		msg, done, err = peer.Handle(eapOf(rp))
		if done || err != nil {
			t.Fatalf("challenge ended the conversation: %v", err)
		}
	}
	t.Fatal("conversation did not end")
	return nil
}

// TestRadSecEAPTLS: whole EAP-TLS logins over RadSec, accept (VLAN, MPPE
// keys under the secret "radsec") and reject, on one connection.
func TestRadSecEAPTLS(t *testing.T) {
	s := startRadSec(t, nil)
	rc := s.mustDial(t, &s.rs.ap)
	rp := loginRadSec(t, rc, s.pki.clientTLS(&s.pki.alice, 0))
	if rp.Code != layeh.CodeAccessAccept {
		t.Fatalf("code %v, want Access-Accept", rp.Code)
	}
	if _, v := rfc2868.TunnelPrivateGroupID_GetString(rp); v != "10" {
		t.Errorf("VLAN %q", v)
	}
	rp = loginRadSec(t, rc, s.pki.clientTLS(&s.pki.frank, tls.VersionTLS12))
	if rp.Code != layeh.CodeAccessReject {
		t.Fatalf("frank: code %v, want Access-Reject", rp.Code)
	}
	if st := s.RadSecStats(); st.Accepted != 1 || st.Open != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestRadSecStatusServer: RFC 5997 keepalives are answered with an
// Access-Accept; a Status-Server without Message-Authenticator is dropped.
func TestRadSecStatusServer(t *testing.T) {
	s := startRadSec(t, nil)
	rc := s.mustDial(t, &s.rs.ap)
	req := statusServer(t, 7)
	if rp := checkReply(t, req, rc.exchange(req)); rp.Code != layeh.CodeAccessAccept || rp.Identifier != 7 {
		t.Fatalf("code %v id %d", rp.Code, rp.Identifier)
	}
	// Without a Message-Authenticator: dropped, connection kept.
	bad := layeh.New(layeh.CodeStatusServer, radsecKey)
	b, _ := bad.Encode()
	rc.write(b)
	if r := rc.next(300 * time.Millisecond); r != nil {
		t.Fatal("answered a Status-Server without Message-Authenticator")
	}
	if st := s.Stats(); st.DropsByClient["aps"][DropMissingMA] != 1 {
		t.Errorf("drops %+v", st.DropsByClient)
	}
	req = statusServer(t, 8)
	checkReply(t, req, rc.exchange(req))
}

// TestRadSecFraming: a packet split into single bytes, several packets in
// one write; a Length outside 20..4096 closes the connection.
func TestRadSecFraming(t *testing.T) {
	s := startRadSec(t, nil)
	rc := s.mustDial(t, &s.rs.ap)
	req := statusServer(t, 1)
	for i := range req {
		rc.write(req[i : i+1])
	}
	checkReply(t, req, rc.next(5*time.Second))

	var burst []byte
	var reqs [][]byte
	for id := range byte(10) {
		r := statusServer(t, 100+id)
		reqs = append(reqs, r)
		burst = append(burst, r...)
	}
	rc.write(burst)
	seen := map[byte]bool{}
	for range reqs {
		r := rc.next(5 * time.Second)
		if r == nil {
			t.Fatalf("%d of %d replies", len(seen), len(reqs))
		}
		checkReply(t, reqs[r[1]-100], r)
		seen[r[1]] = true
	}
	if len(seen) != len(reqs) {
		t.Fatalf("replies to %d distinct requests, want %d", len(seen), len(reqs))
	}

	for _, tc := range []struct {
		name string
		hdr  []byte
	}{
		{"undersize", []byte{12, 1, 0, 19}},
		{"oversize", []byte{12, 1, 0x10, 0x01}},
		{"zero", []byte{0, 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.RadSecStats().FramingError
			rc := s.mustDial(t, &s.rs.ap)
			rc.write(tc.hdr)
			if !rc.closedByServer(5 * time.Second) {
				t.Fatal("connection not closed after a bad Length")
			}
			waitFor(t, "framing error counted", func() bool { return s.RadSecStats().FramingError == before+1 })
		})
	}
}

// TestRadSecManyInFlight: many requests on one connection before any
// reply is read, all answered.
func TestRadSecManyInFlight(t *testing.T) {
	s := startRadSec(t, nil)
	rc := s.mustDial(t, &s.rs.ap)
	const n = 256
	var all []byte
	reqs := make([][]byte, n)
	for i := range n {
		reqs[i] = statusServer(t, byte(i))
		all = append(all, reqs[i]...)
	}
	// Identifiers repeat no request (each request differs by its
	// authenticator), so every one is answered.
	rc.write(all)
	for i := range n {
		r := rc.next(10 * time.Second)
		if r == nil {
			t.Fatalf("%d of %d replies", i, n)
		}
		checkReply(t, reqs[r[1]], r)
	}
}

// TestRadSecIdleTimeout: a silent connection is closed; keepalives keep
// it open.
func TestRadSecIdleTimeout(t *testing.T) {
	s := startRadSec(t, func(c *Config) { c.RadSecIdleTimeout = policy.Duration{Duration: time.Second} })
	keep := s.mustDial(t, &s.rs.ap)
	idle := s.mustDial(t, &s.rs.ap)
	start := time.Now()
	for time.Since(start) < 1800*time.Millisecond {
		req := statusServer(t, byte(time.Since(start)/time.Millisecond))
		checkReply(t, req, keep.exchange(req))
		time.Sleep(300 * time.Millisecond)
	}
	if !idle.closedByServer(3 * time.Second) {
		t.Fatal("idle connection not closed")
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout", took)
	}
	select {
	case <-keep.done:
		t.Fatal("connection with keepalives closed")
	default:
	}
	if st := s.RadSecStats(); st.IdleClosed != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestRadSecRefused: certificates that are not an access point's of a
// radsec_client entry are refused during the handshake, logged and
// counted; so is TLS 1.1.
func TestRadSecRefused(t *testing.T) {
	s := startRadSec(t, nil)
	for _, tc := range []struct {
		name string
		conf func() *tls.Config
	}{
		{"untrusted CA", func() *tls.Config { return s.tlsTo(&s.rs.rogue) }},
		{"employee certificate", func() *tls.Config { return s.tlsTo(&s.pki.aliceChain) }},
		{"no matching name", func() *tls.Config { return s.tlsTo(&s.rs.other) }},
		{"no certificate", func() *tls.Config { return s.tlsTo(nil) }},
		{"TLS 1.1", func() *tls.Config {
			c := s.tlsTo(&s.rs.ap)
			c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			return c
		}},
	} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(tc.name+" "+tlsVersionName(v), func(t *testing.T) {
				before := s.RadSecStats().Refused
				conf := tc.conf()
				if conf.MaxVersion == 0 {
					conf.MaxVersion = v
				}
				rc, err := s.dialRadSec(t, conf)
				if err == nil {
					// TLS 1.3: the client finishes first; the refusal
					// arrives as an alert, no reply ever does.
					req := statusServer(t, 1)
					rc.c.Write(req)
					if r := rc.next(2 * time.Second); r != nil {
						t.Fatal("refused peer got an answer")
					}
					if !rc.closedByServer(time.Second) {
						t.Fatal("connection of a refused peer still open")
					}
				}
				waitFor(t, "refusal counted", func() bool { return s.RadSecStats().Refused == before+1 })
			})
		}
	}
	if len(s.log.msgs("radius: radsec: connection refused")) == 0 {
		t.Error("no refusal logged")
	}
	if st := s.RadSecStats(); st.Accepted != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestRadSecConnLimits: radsec_max_conns and a client's max_conns.
func TestRadSecConnLimits(t *testing.T) {
	s := startRadSec(t, func(c *Config) { c.RadSecClients[0].MaxConns = 2 })
	a, b := s.mustDial(t, &s.rs.ap), s.mustDial(t, &s.rs.ap)
	for _, rc := range []*rsConn{a, b} {
		req := statusServer(t, 1)
		checkReply(t, req, rc.exchange(req))
	}
	c := s.mustDial(t, &s.rs.ap)
	c.c.Write(statusServer(t, 1))
	if !c.closedByServer(5 * time.Second) {
		t.Fatal("third connection of a client with max_conns 2 kept")
	}
	if st := s.RadSecStats(); st.OverLimit != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestRadSecReplyCachePerConnection: a repeated request on the same
// connection gets the cached reply; the same bytes on another connection
// are another request (RFC 6614 2.6.2).
func TestRadSecReplyCachePerConnection(t *testing.T) {
	s := startRadSec(t, nil)
	a, b := s.mustDial(t, &s.rs.ap), s.mustDial(t, &s.rs.ap)
	req := statusServer(t, 9)
	r1 := a.exchange(req)
	r2 := a.exchange(req)
	if !bytes.Equal(r1, r2) || s.Stats().CacheHits != 1 {
		t.Fatalf("retransmission on one connection: same reply %v, cache hits %d", bytes.Equal(r1, r2), s.Stats().CacheHits)
	}
	checkReply(t, req, b.exchange(req))
	if h := s.Stats().CacheHits; h != 1 {
		t.Errorf("cache hits %d after the same request on another connection, want 1", h)
	}
}

// TestRadSecProxyState: Proxy-State is echoed over RadSec too.
func TestRadSecProxyState(t *testing.T) {
	s := startRadSec(t, nil)
	rc := s.mustDial(t, &s.rs.ap)
	req := statusServer(t, 3, proxyStates...)
	rp := checkReply(t, req, rc.exchange(req))
	var got [][]byte
	for _, a := range rp.Attributes {
		if a.Type == rfc2865.ProxyState_Type {
			got = append(got, a.Attribute)
		}
	}
	if len(got) != 2 || !bytes.Equal(got[0], proxyStates[0]) || !bytes.Equal(got[1], proxyStates[1]) {
		t.Errorf("Proxy-State %q", got)
	}
}

// TestRadSecAccountingAndDisconnect: accounting over RadSec is recorded
// before it is answered; revoking the user sends a Disconnect-Request
// over the access point's RadSec connection.
func TestRadSecAccountingAndDisconnect(t *testing.T) {
	acctFile := filepath.Join(t.TempDir(), "acct.jsonl")
	s := startRadSec(t, func(c *Config) { c.AccountingFile = acctFile })
	rc := s.mustDial(t, &s.rs.ap)
	rp := loginRadSec(t, rc, s.pki.clientTLS(&s.pki.alice, 0))
	if rp.Code != layeh.CodeAccessAccept {
		t.Fatalf("code %v", rp.Code)
	}
	user := rfc2865.UserName_GetString(rp)
	p := layeh.New(layeh.CodeAccountingRequest, radsecKey)
	p.Identifier = 200
	rfc2866.AcctStatusType_Set(p, rfc2866.AcctStatusType_Value_Start)
	rfc2866.AcctSessionID_SetString(p, "rs-1")
	rfc2865.UserName_SetString(p, user)
	rfc2865.CallingStationID_SetString(p, testStation)
	rfc2865.NASIdentifier_SetString(p, "ap-1")
	for _, c := range classes(rp) {
		p.Add(rfc2865.Class_Type, c)
	}
	req, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ar := checkReply(t, req, rc.exchange(req))
	if ar.Code != layeh.CodeAccountingResponse {
		t.Fatalf("code %v", ar.Code)
	}
	// Answered, so durable.
	recs := readAcct(t, acctFile)
	if len(recs) != 1 || recs[0].SessionID != "rs-1" || recs[0].NAS != "aps" || recs[0].NASAddr != "127.0.0.1" {
		t.Fatalf("records %+v", recs)
	}
	// The session is linked just after the answer is sent.
	waitFor(t, "session linked by accounting", func() bool { p, l := s.WiFiSessions(); return p == 0 && l == 1 })

	s.auth.deleteRule("Alice Example")
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Revalidate(context.Background())
	}()
	var dr []byte
	select {
	case dr = <-rc.dyn:
	case <-time.After(5 * time.Second):
		t.Fatal("no Disconnect-Request over the RadSec connection")
	}
	nas := &fakeNAS{secret: radsecKey}
	if err := nas.check(dr); err != nil || dr[0] != codeDisconnectRequest {
		t.Fatalf("Disconnect-Request: code %d, %v", dr[0], err)
	}
	dp, _ := layeh.Parse(dr, radsecKey)
	if got := rfc2866.AcctSessionID_GetString(dp); got != "rs-1" {
		t.Errorf("Acct-Session-Id %q", got)
	}
	rc.write(nas.answer(dr, codeDisconnectACK, 0))
	<-done
	wantLive(t, s.Server, 0, 0)
	if st := s.DynAuthStats(); st.Sent[0] != 1 || st.ACKs[0] != 1 {
		t.Errorf("dynauth stats %+v", st)
	}
}

// TestRadSecConfig: configuration errors name the key.
func TestRadSecConfig(t *testing.T) {
	rp := getRadSecPKI(t)
	ca := filepath.Join(rp.dir, "ap-ca.pem")
	base := func() Config {
		return Config{Clients: []ClientConfig{{Name: "lo", Network: "127.0.0.1", Secret: "x"}},
			RadSecConfig: RadSecConfig{RadSecListen: "[::]:2083", RadSecClients: []RadSecClientConfig{{Name: "aps", CAFile: ca, Match: []string{"CN:*"}}}}}
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"radsec only", func(c *Config) { c.Clients = nil }, ""},
		{"clients without listen", func(c *Config) { c.RadSecListen = "" }, "radsec_listen is empty"},
		{"listen without clients", func(c *Config) { c.RadSecClients = nil }, "no [[radius.radsec_client]]"},
		{"bad listen", func(c *Config) { c.RadSecListen = "2083" }, "radsec_listen"},
		{"no ca", func(c *Config) { c.RadSecClients[0].CAFile = "" }, `radsec_client[0] "aps": ca_file`},
		{"missing ca", func(c *Config) { c.RadSecClients[0].CAFile = "/nonexistent" }, "ca_file"},
		{"ca not PEM", func(c *Config) { c.RadSecClients[0].CAFile = filepath.Join(rp.dir, "ap.key") }, "no PEM certificate"},
		{"no match", func(c *Config) { c.RadSecClients[0].Match = nil }, "match: required"},
		{"bad match", func(c *Config) { c.RadSecClients[0].Match = []string{"ap-1"} }, `match "ap-1"`},
		{"bad match type", func(c *Config) { c.RadSecClients[0].Match = []string{"OU:x"} }, "unknown type"},
		{"bad ip", func(c *Config) { c.RadSecClients[0].Match = []string{"IP:x"} }, "IP"},
		{"no name", func(c *Config) { c.RadSecClients[0].Name = "" }, "name: required"},
		{"max_conns", func(c *Config) { c.RadSecClients[0].MaxConns = -1 }, "max_conns"},
		{"radsec_max_conns", func(c *Config) { c.RadSecMaxConns = -1 }, "radsec_max_conns"},
		{"idle", func(c *Config) { c.RadSecIdleTimeout = policy.Duration{Duration: time.Millisecond} }, "radsec_idle_timeout"},
		{"cert without key", func(c *Config) { c.RadSecCert = "x.pem" }, "radsec_cert and radsec_key"},
		{"cert unreadable", func(c *Config) { c.RadSecCert, c.RadSecKey = "/nonexistent.pem", "/nonexistent.key" }, "radsec_cert/radsec_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mod(&c)
			_, err := c.settings()
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestRadSecMatch: the name patterns.
func TestRadSecMatch(t *testing.T) {
	rp := getRadSecPKI(t)
	leaf := rp.apLeaf.Cert // CN ap-1, DNS ap-1.example.com
	for _, tc := range []struct {
		pat  string
		want bool
	}{
		{"DNS:ap-1.example.com", true},
		{"DNS:AP-*.Example.COM", true},
		{"DNS:*.example.com", true},
		{"DNS:*.com", false}, // '*' stays within one label
		{"DNS:ap-2.example.com", false},
		{"CN:ap-*", true},
		{"CN:ap-1", true},
		{"CN:AP-1", false},
		{"CN:*", true},
		{"SUBJECT:" + leaf.Subject.String(), true},
		{"SUBJECT:CN=ap-2", false},
		{"SUBJECT:O=x, CN=ap-1", false},
		{"IP:192.0.2.1", false},
		{"URI:*", false},
		{"EMAIL:*", false},
	} {
		p, err := parseNamePattern(tc.pat)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.matches(leaf); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.pat, got, tc.want)
		}
	}
}

// TestRadSecOwnCertificate: radsec_cert/radsec_key replace the RADIUS
// server certificate on the RadSec listener only.
func TestRadSecOwnCertificate(t *testing.T) {
	rp := getRadSecPKI(t)
	srv := rp.ca.MustIssue(t, policytest.LeafOptions{CN: "radsec.gatehouse.test", DNS: []string{"radsec.gatehouse.test"}, IsServer: true})
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "rs.pem"), filepath.Join(dir, "rs.key")
	os.WriteFile(cf, srv.ChainPEM, 0o600)
	os.WriteFile(kf, srv.KeyPEM, 0o600)
	s := startRadSec(t, func(c *Config) { c.RadSecCert, c.RadSecKey = cf, kf })
	roots := x509.NewCertPool()
	roots.AddCert(rp.ca.Cert)
	conf := &tls.Config{RootCAs: roots, ServerName: "radsec.gatehouse.test", Certificates: []tls.Certificate{rp.ap}, MinVersion: tls.VersionTLS12}
	rc, err := s.dialRadSec(t, conf)
	if err != nil {
		t.Fatal(err)
	}
	req := statusServer(t, 1)
	checkReply(t, req, rc.exchange(req))
	// The default certificate is not served there any more.
	if _, err := s.dialRadSec(t, s.tlsTo(&rp.ap)); err == nil {
		t.Error("RadSec listener presented the RADIUS server certificate")
	}
}

// FuzzRadSecFrames: any byte stream is cut into packets of 20..4096 bytes
// whose Length field is theirs, or ends in an error; never a panic.
func FuzzRadSecFrames(f *testing.F) {
	f.Add(statusServer(f, 1))
	f.Add(append(statusServer(f, 1), statusServer(f, 2)...))
	f.Add([]byte{12, 1, 0, 19})
	f.Add([]byte{12, 1, 0x10, 1})
	f.Add([]byte{12, 1, 0, 40, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		var buf [maxPacket]byte
		total := 0
		for {
			n, err := readFrame(r, &buf)
			if err != nil {
				if errors.Is(err, errFrameLength) && n >= headerLen && n <= maxPacket {
					t.Fatalf("length %d refused", n)
				}
				return
			}
			if n < headerLen || n > maxPacket || int(binary.BigEndian.Uint16(buf[2:4])) != n || !bytes.Equal(buf[:n], b[total:total+n]) {
				t.Fatalf("frame of %d bytes", n)
			}
			total += n
		}
	})
}

// FuzzRadSecMatch: any pattern either fails to parse or matches without
// panicking; "*" in CN matches every non-empty CN.
func FuzzRadSecMatch(f *testing.F) {
	rp := getRadSecPKI(f)
	for _, s := range []string{"DNS:ap-*.example.com", "CN:*", "IP:::1", "SUBJECT:CN=x", "URI:https://*", "EMAIL:*@x", "x", "DNS:**.*"} {
		f.Add(s, "ap-1.example.com")
	}
	f.Fuzz(func(t *testing.T, pat, name string) {
		if p, err := parseNamePattern(pat); err == nil {
			p.matches(rp.apLeaf.Cert)
		}
		if !glob("*", name, 0) || !glob(name, name, 0) && !strings.Contains(name, "*") {
			t.Fatalf("glob(%q)", name)
		}
		glob(pat, name, '.')
	})
}

// TestRadSecPerIPLimit: radsec_max_conns_per_ip bounds connections from
// one address before any handshake (a host holding handshakes open).
func TestRadSecPerIPLimit(t *testing.T) {
	s := startRadSec(t, func(c *Config) { c.RadSecMaxConnsPerIP = 2 })
	var raws []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", s.RadSecAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		raws = append(raws, c)
	}
	waitFor(t, "two connections open", func() bool { return s.RadSecStats().Open == 2 })
	// The third is accepted and reset at once: the reset may already
	// reach connect(2).
	c, err := net.Dial("tcp", s.RadSecAddr().String())
	if err == nil {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("third connection from one address not closed")
		}
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	if st := s.RadSecStats(); st.OverLimit != 1 {
		t.Errorf("stats %+v", st)
	}
	// A silent handshake ends with the handshake timeout; closing
	// frees the place at once.
	raws[0].Close()
	waitFor(t, "place freed", func() bool { return s.RadSecStats().Open == 1 })
	rc := s.mustDial(t, &s.rs.ap)
	req := statusServer(t, 1)
	checkReply(t, req, rc.exchange(req))
}

// TestRadSecShutdown: stopping the server with RadSec connections open
// (one idle, one in the middle of a handshake) closes them, Run returns
// and no goroutine is left.
func TestRadSecShutdown(t *testing.T) {
	p := getPKI(t)
	rp := getRadSecPKI(t)
	leakCheck(t)
	cfg := Config{
		Listen: "127.0.0.1:0", AccountingListen: "127.0.0.1:0", Workers: 2,
		Clients: []ClientConfig{{Name: "lo", Network: "127.0.0.0/8", Secret: testSecret}},
		RadSecConfig: RadSecConfig{RadSecListen: "127.0.0.1:0",
			RadSecClients: []RadSecClientConfig{{Name: "aps", CAFile: filepath.Join(rp.dir, "ap-ca.pem"), Match: []string{"CN:*"}}}},
	}
	s, err := New(cfg, newFakeAuth(p), p.serverTLS(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	ts := &radsecServerT{Server: s, pki: p, rs: rp}
	rc := ts.mustDial(t, &rp.ap)
	req := statusServer(t, 1)
	checkReply(t, req, rc.exchange(req))
	half, err := net.Dial("tcp", s.RadSecAddr().String()) // never handshakes
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	waitFor(t, "both connections counted", func() bool { return s.RadSecStats().Open == 2 })
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("Run did not return\n%s", buf[:runtime.Stack(buf, true)])
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("shutdown took %v", took)
	}
	if !rc.closedByServer(time.Second) {
		t.Error("RadSec connection still open after shutdown")
	}
	if st := s.RadSecStats(); st.Open != 0 {
		t.Errorf("stats after shutdown %+v", st)
	}
}

// BenchmarkRadSecStatusServer: Status-Server round trips over one RadSec
// connection, 64 in flight.
func BenchmarkRadSecStatusServer(b *testing.B) {
	p := getPKI(b)
	rp := getRadSecPKI(b)
	cfg := Config{
		Listen: "127.0.0.1:0", AccountingListen: "off",
		Clients: []ClientConfig{{Name: "lo", Network: "127.0.0.0/8", Secret: testSecret}},
		RadSecConfig: RadSecConfig{RadSecListen: "127.0.0.1:0",
			RadSecClients: []RadSecClientConfig{{Name: "aps", CAFile: filepath.Join(rp.dir, "ap-ca.pem"), Match: []string{"CN:*"}}}},
	}
	s, err := New(cfg, newFakeAuth(p), p.serverTLS(), nil)
	if err != nil {
		b.Fatal(err)
	}
	runServer(b, s)
	ts := &radsecServerT{Server: s, pki: p, rs: rp}
	rc := ts.mustDial(b, &rp.ap)
	reqs := make([][]byte, b.N) // distinct: no reply-cache hits
	for i := range reqs {
		reqs[i] = statusServer(b, byte(i))
	}
	const window = 64
	b.ResetTimer()
	sent := 0
	for ; sent < min(window, b.N); sent++ {
		rc.c.Write(reqs[sent])
	}
	for got := 0; got < b.N; got++ {
		if rc.next(10*time.Second) == nil {
			b.Fatalf("%d of %d replies", got, b.N)
		}
		if sent < b.N {
			rc.c.Write(reqs[sent])
			sent++
		}
	}
}

// TestRadSecCoA: a changed VLAN of a session that came over RadSec gives
// a CoA-Request over the connection (radsec_client coa = true); with the
// connection gone, the request fails without sending anything.
func TestRadSecCoA(t *testing.T) {
	s := startRadSec(t, func(c *Config) { c.RadSecClients[0].CoA = true })
	rc := s.mustDial(t, &s.rs.ap)
	rp := loginRadSec(t, rc, s.pki.clientTLS(&s.pki.alice, 0))
	if rp.Code != layeh.CodeAccessAccept {
		t.Fatalf("code %v", rp.Code)
	}
	p := layeh.New(layeh.CodeAccountingRequest, radsecKey)
	rfc2866.AcctStatusType_Set(p, rfc2866.AcctStatusType_Value_Start)
	rfc2866.AcctSessionID_SetString(p, "rs-coa")
	rfc2865.UserName_SetString(p, rfc2865.UserName_GetString(rp))
	for _, c := range classes(rp) {
		p.Add(rfc2865.Class_Type, c)
	}
	req, _ := p.Encode()
	checkReply(t, req, rc.exchange(req))
	waitFor(t, "session linked", func() bool { _, l := s.WiFiSessions(); return l == 1 })

	s.auth.setRule("Alice Example", policy.WiFi{VLAN: "11"})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Revalidate(context.Background())
	}()
	var cr []byte
	select {
	case cr = <-rc.dyn:
	case <-time.After(5 * time.Second):
		t.Fatal("no CoA-Request over the RadSec connection")
	}
	nas := &fakeNAS{secret: radsecKey}
	if err := nas.check(cr); err != nil || cr[0] != codeCoARequest {
		t.Fatalf("CoA-Request: code %d, %v", cr[0], err)
	}
	cp, _ := layeh.Parse(cr, radsecKey)
	if _, v := rfc2868.TunnelPrivateGroupID_GetString(cp); v != "11" {
		t.Errorf("CoA VLAN %q", v)
	}
	rc.write(nas.answer(cr, codeCoAACK, 0))
	<-done
	if st := s.DynAuthStats(); st.Sent[1] != 1 || st.ACKs[1] != 1 {
		t.Errorf("dynauth stats %+v", st)
	}

	// The access point went away: nothing to send over.
	rc.c.Close()
	waitFor(t, "connection gone", func() bool { return s.RadSecStats().Open == 0 })
	s.auth.setRule("Alice Example", policy.WiFi{VLAN: "12"})
	s.Revalidate(context.Background())
	if st := s.DynAuthStats(); st.Sent[1] != 1 || st.Errors[1] != 1 {
		t.Errorf("dynauth stats after the connection closed %+v", st)
	}
}

// TestRadSecHandshakeTimeout: a connection that never completes its
// handshake is closed after the handshake timeout and counted refused.
func TestRadSecHandshakeTimeout(t *testing.T) {
	s := startRadSec(t, nil)
	s.Server.rs.handshake.Store(int64(200 * time.Millisecond))
	c, err := net.Dial("tcp", s.RadSecAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("silent connection got data")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("closed after %v", took)
	}
	waitFor(t, "refusal counted", func() bool { st := s.RadSecStats(); return st.Refused == 1 && st.Open == 0 })
}

// TestRadSecSlowPeer: a peer whose reply queue is full (it does not read)
// loses its connection instead of blocking a worker.
func TestRadSecSlowPeer(t *testing.T) {
	s := startRadSec(t, nil)
	c := &radsecConn{r: s.Server.rs, out: make(chan []byte, 2), done: make(chan struct{})}
	for i := range 2 {
		if _, err := c.WriteToUDPAddrPort([]byte{byte(i)}, netip.AddrPort{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.WriteTo([]byte{3}, nil); err == nil || !c.closed() {
		t.Fatalf("third reply queued on a full queue (err %v)", err)
	}
	if _, err := c.WriteTo([]byte{4}, nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	if st := s.RadSecStats(); st.SlowPeer != 1 {
		t.Errorf("stats %+v", st)
	}
}
