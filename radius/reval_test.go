package radius

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/audit"
)

// TestMassCutGuardKeepsSessions swaps in a policy that allows nobody (as a
// truncated policy file that still compiles would): the guard holds every
// policy cut, no Disconnect-Request is sent and every session stays;
// revocations still disconnect; a confirmation releases the held cuts.
func TestMassCutGuardKeepsSessions(t *testing.T) {
	leakCheck(t)
	nas := newFakeNAS(t, testSecret)
	port := nas.port()
	p := getPKI(t)
	auth := &switchAuth{fakeAuth: newFakeAuth(p)}
	s, err := New(Config{Clients: []ClientConfig{{Name: "lo", Network: "127.0.0.0/8", Secret: testSecret, CoAPort: &port}},
		DynAuthTimeout: policy.Duration{Duration: 200 * time.Millisecond}}, auth, p.serverTLS(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	n := s.nas.lookup(netip.MustParseAddr("127.0.0.1"))
	src := netip.MustParseAddr("127.0.0.1")
	const sessions = 24
	for i := range sessions {
		d := &policy.Decision{Allowed: true, Rule: "r", Chain: []*x509.Certificate{{}}}
		st := fmt.Sprintf("st-%02d", i)
		cls, _, _ := s.live.accept(n, src, acctPacket(t, 1, "", "u", st), "u", d, time.Now())
		s.live.account(n, src, acctPacket(t, 1, "S"+st, "u", st, cls), time.Now())
	}
	auth.forced.Store(&policy.Decision{Code: policy.CodeNoRule, Reason: "no rule matched"})
	rep := s.Revalidate(context.Background())
	if rep.Held != sessions || rep.CutPolicy != 0 {
		t.Fatalf("report %v", rep)
	}
	nas.none(t)
	if _, live := s.live.len(); live != sessions {
		t.Fatalf("%d live sessions, want %d", live, sessions)
	}
	if h := s.rv().engine.Held()[policy.DoorWiFi]; h.Count != sessions || len(h.TopReasons) != 1 || h.TopReasons[0].Reason != "no_rule" {
		t.Fatalf("Held %+v", h)
	}
	// The same allowed-only-for-VPN result (door_not_permitted) is a policy cut too.
	auth.forced.Store(&policy.Decision{Allowed: true, Rule: "vpn-only", VPN: &policy.VPNAccess{}})
	if rep := s.Revalidate(context.Background()); rep.Held != sessions {
		t.Fatalf("door_not_permitted: report %v", rep)
	}
	nas.none(t)

	// Confirmed: the held cuts go through.
	auth.forced.Store(&policy.Decision{Code: policy.CodeNoRule, Reason: "no rule matched"})
	if _, err := s.rv().engine.Confirm(); err != nil {
		t.Fatal(err)
	}
	rep = s.Revalidate(context.Background())
	if rep.CutPolicy != sessions || rep.Held != 0 {
		t.Fatalf("confirmed: report %v", rep)
	}
	for range sessions {
		nas.next(t, 2*time.Second)
	}
	if _, live := s.live.len(); live != 0 {
		t.Fatalf("%d live sessions after confirmation", live)
	}
}

// TestTriggeredRunServedByExplicitRun: a policy reload triggers a run on
// the server's loop; `gatehouse reload` then runs one itself, which serves
// that trigger. The loop must not run again for it later — say after the
// operator confirmed the held cut — or it would cut the sessions behind
// the back of the confirmation's own run, which would then report none
// (TestServeReloadConfirmCut failed so under load: "0 live").
func TestTriggeredRunServedByExplicitRun(t *testing.T) {
	s := startDynServer(t, nil)
	n := s.Server.nas.lookup(netip.MustParseAddr("127.0.0.1"))
	src := netip.MustParseAddr("127.0.0.1")
	const sessions = 24
	for i := range sessions {
		d := &policy.Decision{Allowed: true, Rule: "r", Chain: []*x509.Certificate{{}}}
		st := fmt.Sprintf("st-%02d", i)
		cls, _, _ := s.live.accept(n, src, acctPacket(t, 1, "", "u", st), "u", d, time.Now())
		s.live.account(n, src, acctPacket(t, 1, "S"+st, "u", st, cls), time.Now())
	}
	s.auth.forced.Store(&policy.Decision{Code: policy.CodeNoRule, Reason: "no rule matched"})

	// The loop is slow to get to its trigger: it takes it, then waits for
	// the run lock the explicit run holds.
	s.revalMu.Lock()
	s.TriggerRevalidate() // the reload's swap
	deadline := time.Now().Add(10 * time.Second)
	for len(s.rv().trigger.C()) > 0 {
		if time.Now().After(deadline) {
			s.revalMu.Unlock()
			t.Fatal("the loop did not take its trigger")
		}
		time.Sleep(time.Millisecond)
	}
	rep := s.revalidateLocked(context.Background())    // gatehouse reload's own run
	if _, err := s.rv().engine.Confirm(); err != nil { // gatehouse reload --confirm-cut
		s.revalMu.Unlock()
		t.Fatal(err)
	}
	s.revalMu.Unlock()
	if rep.Held != sessions {
		t.Fatalf("reload's run: %v", rep)
	}
	// The loop now gets the lock; its trigger was served: nothing is sent
	// until the confirmation's own run.
	time.Sleep(300 * time.Millisecond)
	s.nas.none(t)
	rep = s.Revalidate(context.Background())
	if rep.Live != sessions || rep.CutPolicy != sessions || rep.Held != 0 {
		t.Fatalf("confirmation's run: %v, want %d live, %d cut", rep, sessions, sessions)
	}
	for range sessions {
		s.nas.next(t, 5*time.Second)
	}
	s.nas.none(t)
}

// TestMassRevocationNotHeld: certificate cuts are never held.
func TestMassRevocationNotHeld(t *testing.T) {
	leakCheck(t)
	nas := newFakeNAS(t, testSecret)
	port := nas.port()
	p := getPKI(t)
	auth := &switchAuth{fakeAuth: newFakeAuth(p)}
	s, err := New(Config{Clients: []ClientConfig{{Name: "lo", Network: "127.0.0.0/8", Secret: testSecret, CoAPort: &port}}},
		auth, p.serverTLS(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	n := s.nas.lookup(netip.MustParseAddr("127.0.0.1"))
	src := netip.MustParseAddr("127.0.0.1")
	for i := range 30 {
		d := &policy.Decision{Allowed: true, Rule: "r", Chain: []*x509.Certificate{{}}}
		s.live.accept(n, src, acctPacket(t, 1, "", "u", fmt.Sprintf("st-%d", i)), "u", d, time.Now())
	}
	auth.forced.Store(&policy.Decision{Code: policy.CodeRevoked, Reason: "revoked"})
	if rep := s.Revalidate(context.Background()); rep.CutCert != 30 || rep.Held != 0 {
		t.Fatalf("report %v", rep)
	}
	if pend, live := s.live.len(); pend+live != 0 {
		t.Fatalf("%d sessions left", pend+live)
	}
}

// TestDoorNotPermittedAudited: a rule without Wi-Fi access is refused and
// audited as outcome=deny code=door_not_permitted, naming the rule.
func TestDoorNotPermittedAudited(t *testing.T) {
	var al auditLog
	s := startDynServer(t, nil)
	s.SetAuditor(&al)
	s.auth.forced.Store(&policy.Decision{Allowed: true, Code: policy.CodeAllowed, Rule: "vpn-only",
		VPN: &policy.VPNAccess{}, Identity: policy.Identity{Name: "alice"}})
	c := &testServer{Server: s.Server}
	res, err := c.client(testSecret).Authenticate(context.Background(), "anonymous@example.com", s.pki.clientTLS(&s.pki.alice, tls.VersionTLS13))
	if err != nil || res.Accepted {
		t.Fatalf("want Access-Reject; err %v", err)
	}
	evs := al.events()
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	line, err := audit.AppendJSON(nil, &evs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"outcome":"deny"`, `"code":"door_not_permitted"`, `"rule":"vpn-only"`, `gives no Wi-Fi access`} {
		if !strings.Contains(string(line), want) {
			t.Errorf("audit line lacks %s: %s", want, line)
		}
	}
}
