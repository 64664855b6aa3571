package radius

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// auditLog collects audit events.
type auditLog struct {
	mu  sync.Mutex
	evs []policy.AuditEvent
}

func (a *auditLog) Audit(ev policy.AuditEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evs = append(a.evs, ev)
}

func (a *auditLog) events() []policy.AuditEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]policy.AuditEvent(nil), a.evs...)
}

func TestAuditAndLatency(t *testing.T) {
	var al auditLog
	s := startServerWith(t, func(s *Server) { s.SetAuditor(&al) }, nil)
	p := s.pki
	conf := p.clientTLS(&p.alice, tls.VersionTLS12)
	conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for _, c := range []*tls.Config{conf, conf, p.clientTLS(&p.mallory, 0), p.clientTLS(nil, 0)} {
		if _, err := s.client(testSecret).Authenticate(context.Background(), "anonymous", c); err != nil {
			t.Fatal(err)
		}
	}
	evs := al.events()
	if len(evs) != 4 {
		t.Fatalf("%d audit events, want 4", len(evs))
	}
	for i, want := range []struct {
		allowed, resumed bool
		tls              uint16
		code             policy.Code
	}{
		{true, false, tls.VersionTLS12, policy.CodeAllowed},
		{true, true, tls.VersionTLS12, policy.CodeAllowed},
		{false, false, tls.VersionTLS13, policy.CodeUntrusted},
		{false, false, 0, policy.CodeNoCertificate}, // the handshake fails: no decision
	} {
		ev := evs[i]
		if ev.Door != "wifi" || ev.Event != "authenticate" || ev.NAS != "lo" || !ev.NASAddr.IsValid() {
			t.Errorf("#%d: door %q event %q nas %q %v", i, ev.Door, ev.Event, ev.NAS, ev.NASAddr)
		}
		if ev.Allowed != want.allowed || ev.Resumed != want.resumed || ev.TLSVersion != want.tls || ev.Decision.Code != want.code {
			t.Errorf("#%d: allowed %v resumed %v tls %x code %v, want %+v", i, ev.Allowed, ev.Resumed, ev.TLSVersion, ev.Decision.Code, want)
		}
		if ev.Duration <= 0 || ev.Time.IsZero() {
			t.Errorf("#%d: duration %v time %v", i, ev.Duration, ev.Time)
		}
		if ev.Decision.Chain != nil {
			t.Errorf("#%d: chain kept in the audit event", i)
		}
	}
	if evs[0].Decision.Identity.CN != "Alice Example" {
		t.Errorf("identity %+v", evs[0].Decision.Identity)
	}
	if st := s.Stats(); st.AuthLatency.Count != 4 {
		t.Errorf("latency count %d, want 4", st.AuthLatency.Count)
	}
	if err := s.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

// gateAuth blocks every Authorize until released.
type gateAuth struct {
	Authorizer
	entered chan struct{}
	release chan struct{}
}

func (g *gateAuth) Authorize(ctx context.Context, chain []*x509.Certificate) policy.Decision {
	g.entered <- struct{}{}
	<-g.release
	return g.Authorizer.Authorize(ctx, chain)
}

// TestShutdownDrains stops the server in the middle of a conversation: the
// conversation completes, a new one is not started, Run returns after.
func TestShutdownDrains(t *testing.T) {
	p := getPKI(t)
	leakCheck(t)
	g := &gateAuth{Authorizer: newFakeAuth(p), entered: make(chan struct{}, 1), release: make(chan struct{})}
	s, err := New(Config{
		Listen: "127.0.0.1:0", AccountingListen: "off", Workers: 2,
		Clients: []ClientConfig{{Name: "lo", Network: "127.0.0.0/8", Secret: testSecret}},
	}, g, p.serverTLS(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, pki: p}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	if s.Addr() == nil {
		t.Fatal(<-done)
	}
	type result struct {
		accepted bool
		err      error
	}
	first := make(chan result, 1)
	go func() {
		c := ts.client(testSecret)
		c.Timeout, c.Retries = 3*time.Second, 0
		res, err := c.Authenticate(context.Background(), "alice", p.clientTLS(&p.alice, 0))
		first <- result{err == nil && res.Accepted, err}
	}()
	<-g.entered // handshake done, decision pending
	cancel()
	for s.Ready() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	// A new conversation is not started while shutting down.
	c := ts.client(testSecret)
	c.Timeout, c.Retries = 200*time.Millisecond, 0
	if res, err := c.Authenticate(context.Background(), "bob", p.clientTLS(&p.alice, 0)); err == nil {
		t.Errorf("new conversation answered during shutdown: %v", res.Reply.Code)
	}
	close(g.release)
	if r := <-first; !r.accepted {
		t.Fatalf("conversation in flight at shutdown: accepted=false err=%v", r.err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(DrainTimeout + 2*time.Second):
		t.Fatal("Run did not return")
	}
	if st := s.Stats(); st.Drops[DropShuttingDown] == 0 {
		t.Errorf("drops %v: no shutting_down", st.Drops)
	}
}

// TestAuditNamesCertificateWithoutKey: a peer presents alice's certificate
// but cannot sign with her key, so the handshake fails before any decision.
// The audit line still names the certificate it presented (issue: every
// audit line names the presented leaf), with code untrusted, for TLS 1.2
// and 1.3.
func TestAuditNamesCertificateWithoutKey(t *testing.T) {
	var al auditLog
	s := startServerWith(t, func(s *Server) { s.SetAuditor(&al) }, nil)
	p := s.pki
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	stolen := tls.Certificate{Certificate: p.alice.Certificate, PrivateKey: other}
	leaf, err := x509.ParseCertificate(p.alice.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.Raw)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		res, err := s.client(testSecret).Authenticate(context.Background(), "anonymous", p.clientTLS(&stolen, v))
		if err == nil && res.Accepted {
			t.Fatalf("TLS %x: accepted a certificate presented without its key", v)
		}
	}
	evs := al.events()
	if len(evs) != 2 {
		t.Fatalf("%d audit events, want 2", len(evs))
	}
	for i, ev := range evs {
		id := ev.Decision.Identity
		if ev.Allowed || ev.Decision.Code != policy.CodeUntrusted || id.Fingerprint != hex.EncodeToString(sum[:]) ||
			id.CertSerial != leaf.SerialNumber.Text(16) || id.Subject != leaf.Subject.String() || id.Issuer != leaf.Issuer.String() {
			t.Errorf("#%d: allowed %v code %v identity %+v, want alice's certificate named", i, ev.Allowed, ev.Decision.Code, id)
		}
	}
}
