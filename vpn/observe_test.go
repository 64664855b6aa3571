package vpn

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

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

func TestAuditEnrollAndRevalidate(t *testing.T) {
	ca := newTestCA(t)
	auth := &fakeAuth{}
	auth.set("alice", allow("engineering", engineeringAccess))
	auth.set("carol", policy.Decision{Code: policy.CodeRevoked, Reason: "revoked"})
	env := startServer(t, auth, ca, t.TempDir(), nil)
	var al auditLog
	env.srv.SetAuditor(&al)
	if err := env.srv.Serving(); err != nil {
		t.Fatalf("Serving: %v", err)
	}
	if code, body := env.post(ca.issue(t, "alice", false), keyBody(newPub(t))); code != 200 {
		t.Fatalf("alice: %d %s", code, body)
	}
	if code, _ := env.post(ca.issue(t, "carol", false), keyBody(newPub(t))); code != 403 {
		t.Fatalf("carol: %d", code)
	}
	env.post(ca.issue(t, "alice", false), `{"public_key":`) // bad request: counted, not audited
	auth.set("alice", policy.Decision{Code: policy.CodeRevoked, Reason: "revoked"})
	env.srv.Revalidate(context.Background())

	evs := al.events()
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3: %+v", len(evs), evs)
	}
	for i, want := range []struct {
		event   string
		allowed bool
		code    policy.Code
	}{{"enroll", true, policy.CodeAllowed}, {"enroll", false, policy.CodeRevoked}, {"revalidate", false, policy.CodeRevoked}} {
		ev := evs[i]
		if ev.Door != "vpn" || ev.Event != want.event || ev.Allowed != want.allowed || ev.Decision.Code != want.code {
			t.Errorf("#%d: %s %s allowed=%v code=%v, want %+v", i, ev.Door, ev.Event, ev.Allowed, ev.Decision.Code, want)
		}
		if ev.Decision.VPN != nil || ev.Decision.Chain != nil {
			t.Errorf("#%d: VPN access or chain kept in the event", i)
		}
	}
	if !evs[0].Client.IsValid() || !evs[0].Peer.IsValid() || !evs[2].Peer.IsValid() {
		t.Errorf("addresses: client %v peer %v / %v", evs[0].Client, evs[0].Peer, evs[2].Peer)
	}
	if got := env.srv.Enrollments(); got["allowed"] != 1 || got["denied"] != 1 || got["failed"] != 1 {
		t.Errorf("enrollments %v", got)
	}
	if n := env.srv.EnrollLatency().Count; n != 3 {
		t.Errorf("enroll latency count %d, want 3", n)
	}
	if _, err := env.srv.DeviceStats(); err != nil {
		t.Errorf("DeviceStats: %v", err)
	}
}

func TestParseDeviceStats(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	text := "private_key=00\nlisten_port=51820\n" +
		"public_key=aa\nlast_handshake_time_sec=1799999990\nlast_handshake_time_nsec=5\nrx_bytes=100\ntx_bytes=200\n" +
		"public_key=bb\nlast_handshake_time_sec=0\nrx_bytes=1\ntx_bytes=2\n" +
		"public_key=cc\nlast_handshake_time_sec=1799990000\nrx_bytes=10\ntx_bytes=20\nerrno=0\n"
	got := parseDeviceStats(text, now)
	want := DeviceStats{RxBytes: 111, TxBytes: 222, Handshaked: 1, LatestHandshake: time.Unix(1_799_999_990, 0)}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func FuzzParseDeviceStats(f *testing.F) {
	f.Add("public_key=aa\nlast_handshake_time_sec=1799999990\nrx_bytes=100\ntx_bytes=200\n")
	f.Add("rx_bytes=-1\ntx_bytes=99999999999999999999999\nlast_handshake_time_sec=x\n=\n\n")
	f.Fuzz(func(t *testing.T, text string) {
		st := parseDeviceStats(text, time.Unix(1_800_000_000, 0))
		if st.Handshaked < 0 {
			t.Fatal("negative handshake count")
		}
	})
}
