package vpn

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/audit"
	"github.com/gatehouse/gatehouse/policy/reval"
)

const restoreTimeout = 25 * time.Second

// onDevice reports whether the WireGuard device has a peer with key k.
func onDevice(t *testing.T, s *Server, k Key) bool {
	t.Helper()
	s.mu.Lock()
	text, err := s.dev.IpcGet()
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(text, "public_key="+hex.EncodeToString(k[:]))
}

func storedRecord(t *testing.T, dir, fp string) *PeerRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "peers", fp+".json"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDenialSuspendsAndAllowRestores(t *testing.T) {
	ca := newTestCA(t)
	auth := &fakeAuth{}
	auth.set("alice", allow("engineering", engineeringAccess))
	dir := t.TempDir()
	env := startServer(t, auth, ca, dir, nil)
	alice := ca.issue(t, "alice", false)
	text, err := env.enroll(alice)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(alice.Certificate[0])
	afp := fingerprint(leaf)
	client := newWGClient(t, parseWGQuick(t, text))
	if err := client.tcpEcho(svcSSH, 22, reachTimeout); err != nil {
		t.Fatal(err)
	}
	key := env.srv.peers[afp].PublicKey

	for i, denial := range []policy.Decision{
		{Code: policy.CodeRuleDenies, Rule: "contractors", Reason: "rule contractors denies"},
		allow("wifi-only", nil), // door_not_permitted at the VPN door
	} {
		auth.set("alice", denial)
		rep := env.srv.Revalidate(context.Background())
		if rep.CutPolicy != 1 {
			t.Fatalf("report %v", rep)
		}
		if i == 0 {
			if err := client.tcpEcho(svcSSH, 22, blockedTimeout); err == nil {
				t.Fatal("suspended peer still has access")
			}
		}
		if onDevice(t, env.srv, key) {
			t.Fatal("suspended peer still on the device")
		}
		if st := env.srv.Stats(); st.Peers != 1 || st.Leases != 1 || st.Suspended != 1 {
			t.Fatalf("stats %+v", st)
		}
		want := denial.At(policy.DoorVPN).Code.String()
		if r := storedRecord(t, dir, afp); r.Suspended == nil || r.Suspended.Code != want {
			t.Fatalf("stored suspension %+v, want code %s", r.Suspended, want)
		}

		auth.set("alice", allow("engineering", engineeringAccess))
		env.srv.Revalidate(context.Background())
		if !onDevice(t, env.srv, key) {
			t.Fatal("restored peer not on the device")
		}
		// The server forgot the session keys: the client handshakes
		// again once its packets go unanswered (Keepalive-Timeout +
		// Rekey-Timeout, 15 s, in WireGuard's protocol).
		if i == 0 {
			if err := client.tcpEcho(svcSSH, 22, restoreTimeout); err != nil {
				t.Fatalf("access not restored: %v", err)
			}
		}
		if r := storedRecord(t, dir, afp); r.Suspended != nil {
			t.Fatalf("still stored suspended: %+v", r.Suspended)
		}
	}

	// A suspension survives a restart: the peer stays off the device.
	auth.set("alice", policy.Decision{Code: policy.CodeNoRule, Reason: "no rule matched"})
	env.srv.Revalidate(context.Background())
	if err := env.stop(); err != nil {
		t.Fatal(err)
	}
	env2 := startServer(t, auth, ca, dir, nil)
	if onDevice(t, env2.srv, key) || env2.srv.Stats().Suspended != 1 {
		t.Fatal("suspended peer restored to the device at restart")
	}
	auth.set("alice", allow("engineering", engineeringAccess))
	env2.srv.Revalidate(context.Background())
	if !onDevice(t, env2.srv, key) {
		t.Fatal("not restored after restart")
	}
}

func TestRevalidateTransientKeepsAccess(t *testing.T) {
	ca := newTestCA(t)
	auth := &fakeAuth{}
	auth.set("alice", allow("engineering", engineeringAccess))
	env := startServer(t, auth, ca, t.TempDir(), nil)
	text, err := env.enroll(ca.issue(t, "alice", false))
	if err != nil {
		t.Fatal(err)
	}
	client := newWGClient(t, parseWGQuick(t, text))
	for _, c := range []policy.Code{policy.CodeDirectoryUnavailable, policy.CodeRevocationUnknown, policy.CodePolicyUnavailable} {
		auth.set("alice", policy.Decision{Code: c})
		if rep := env.srv.Revalidate(context.Background()); rep.Transient != 1 {
			t.Fatalf("%v: report %v", c, rep)
		}
		if err := client.tcpEcho(svcSSH, 22, reachTimeout); err != nil {
			t.Fatalf("%v cut the peer: %v", c, err)
		}
		if env.srv.Stats().Suspended != 0 {
			t.Fatalf("%v suspended the peer", c)
		}
	}
}

// enrollMany enrolls n holders (CN user00…) directly, as the API would.
func enrollMany(t *testing.T, env *testEnv, n int) []*x509.Certificate {
	var leaves []*x509.Certificate
	for i := range n {
		cn := fmt.Sprintf("user%02d", i)
		env.auth.set(cn, allow("engineering", engineeringAccess))
		c := env.ca.issue(t, cn, false)
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		chain := []*x509.Certificate{leaf, env.ca.cert}
		if _, aerr := env.srv.enroll(chain, env.auth.Authorize(context.Background(), chain), newPub(t)); aerr != nil {
			t.Fatal(aerr.msg)
		}
		leaves = append(leaves, leaf)
	}
	return leaves
}

// TestMassCutGuardKeepsPeers swaps in a policy that allows nobody (as a
// truncated file that still compiles would): the guard holds every cut and
// all peers keep their access; revocations still go through; confirmation
// releases the held cuts.
func TestMassCutGuardKeepsPeers(t *testing.T) {
	ca := newTestCA(t)
	auth := &fakeAuth{}
	env := startServer(t, auth, ca, t.TempDir(), nil)
	leaves := enrollMany(t, env, 24)
	for i := range leaves {
		auth.set(fmt.Sprintf("user%02d", i), policy.Decision{Code: policy.CodeNoRule, Reason: "no rule matched"})
	}
	auth.set("user00", policy.Decision{Code: policy.CodeRevoked, Reason: "revoked"})
	rep := env.srv.Revalidate(context.Background())
	if rep.Held != 23 || rep.CutCert != 1 || rep.CutPolicy != 0 {
		t.Fatalf("report %v", rep)
	}
	st := env.srv.Stats()
	if st.Peers != 24 || st.Suspended != 1 {
		t.Fatalf("after held run: %+v", st)
	}
	held := env.srv.engine.Held()
	if held[policy.DoorVPN].Count != 23 {
		t.Fatalf("Held() = %+v", held)
	}
	// Runs again: still held.
	if rep := env.srv.Revalidate(context.Background()); rep.Held != 23 {
		t.Fatalf("second run: %v", rep)
	}
	if _, err := env.srv.engine.Confirm(); err != nil {
		t.Fatal(err)
	}
	rep = env.srv.Revalidate(context.Background())
	if rep.CutPolicy != 23 || rep.Held != 0 {
		t.Fatalf("confirmed run: %v", rep)
	}
	if st := env.srv.Stats(); st.Peers != 24 || st.Suspended != 24 {
		t.Fatalf("after confirmation: %+v", st)
	}
}

func TestExpiredPastGraceDeleted(t *testing.T) {
	ca := newTestCA(t)
	auth := &fakeAuth{}
	dir := t.TempDir()
	st := newStore(NewFileStore(filepath.Join(dir, "peers")), testLogger(t))
	os.MkdirAll(filepath.Join(dir, "peers"), 0o700)
	leaf := ca.issue(t, "old", false)
	now := time.Now()
	mk := func(i int, notAfter time.Time) {
		r := &record{Fingerprint: fp(i), Identity: fmt.Sprintf("old%d", i), IdentityKey: "cn/old", PublicKey: newPub(t),
			Address: netip.AddrFrom4([4]byte{100, 96, 0, byte(10 + i)}), Rule: "engineering", Access: engineeringAccess,
			Chain: [][]byte{leaf.Certificate[0], ca.cert.Raw}, NotAfter: notAfter, Updated: now}
		if err := st.save(r); err != nil {
			t.Fatal(err)
		}
	}
	mk(1, now.Add(-2*time.Hour))    // expired, past the grace: deleted
	mk(2, now.Add(-30*time.Minute)) // expired, within the grace: suspended
	mk(3, now.Add(time.Hour))       // valid
	auth.set("old", allow("engineering", engineeringAccess))
	newKeyFile(t, filepath.Join(dir, KeyFileName)) // the registry holds peers: the key exists
	env := startServer(t, auth, ca, dir, func(c *Config) { c.ExpiredGrace = policy.Duration{Duration: time.Hour} })
	env.srv.Revalidate(context.Background())
	s := env.srv.Stats()
	if s.Peers != 2 || s.Suspended != 1 || s.Leases != 2 {
		t.Fatalf("stats %+v", s)
	}
	if _, err := os.Stat(filepath.Join(dir, "peers", fp(1)+".json")); !os.IsNotExist(err) {
		t.Fatalf("expired record past grace not deleted: %v", err)
	}
	if r := storedRecord(t, dir, fp(2)); r.Suspended == nil || r.Suspended.Code != "expired" {
		t.Fatalf("record within grace: %+v", r.Suspended)
	}
}

func TestRemovePeers(t *testing.T) {
	ca := newTestCA(t)
	auth := &fakeAuth{}
	dir := t.TempDir()
	env := startServer(t, auth, ca, dir, nil)
	leaves := enrollMany(t, env, 3)
	if _, err := env.srv.RemovePeers("nobody"); err == nil {
		t.Fatal("no match accepted")
	}
	out, err := env.srv.RemovePeers("user01")
	if err != nil || len(out) != 1 {
		t.Fatalf("by identity: %v %v", out, err)
	}
	out, err = env.srv.RemovePeers(fingerprint(leaves[0]))
	if err != nil || len(out) != 1 {
		t.Fatalf("by fingerprint: %v %v", out, err)
	}
	if st := env.srv.Stats(); st.Peers != 1 || st.Leases != 1 {
		t.Fatalf("stats %+v", st)
	}
	addr := env.srv.peers[fingerprint(leaves[2])].Address.String()
	if err := env.stop(); err != nil {
		t.Fatal(err)
	}
	// With no server running, the registry is edited directly.
	out, err = RemoveStoredPeers(dir, addr)
	if err != nil || len(out) != 1 {
		t.Fatalf("offline by address: %v %v", out, err)
	}
	l, err := ListPeers(context.Background(), dir, "")
	if err != nil || len(l.Peers) != 0 {
		t.Fatalf("left: %+v %v", l, err)
	}
}

func TestRecordFormat(t *testing.T) {
	// Today's format round-trips with its version.
	r := &record{Fingerprint: fp(1), Identity: "alice", PublicKey: newPub(t), Address: netip.MustParseAddr("100.96.0.2"),
		Access: engineeringAccess, Suspended: &Suspension{Since: time.Unix(1e9, 0).UTC(), Code: "no_rule", Reason: "x"}}
	b, err := EncodeRecord(r.stored())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"version":1`) {
		t.Fatalf("no version: %s", b)
	}
	back, err := DecodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !sameAccess(back.Access.access(), engineeringAccess) || !reflect.DeepEqual(back.Suspended, r.Suspended) || back.Version != RecordVersion {
		t.Fatalf("round trip: %+v", back)
	}
	// A newer version is refused (and so quarantined, not deleted).
	if _, err := DecodeRecord([]byte(`{"version":99,"fingerprint":"` + fp(1) + `"}`)); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("version 99: %v", err)
	}
	// Unknown keys of a known version are ignored.
	if _, err := DecodeRecord([]byte(strings.Replace(string(b), `"version":1`, `"version":1,"future_key":true`, 1))); err != nil {
		t.Fatal(err)
	}
}

// TestRecordV0Loads loads a registry written by the format before versions
// (testdata/registry-v0, written by gatehouse before this change).
func TestRecordV0Loads(t *testing.T) {
	dir := t.TempDir()
	ents, _ := os.ReadDir("testdata/registry-v0")
	os.MkdirAll(filepath.Join(dir, "peers"), 0o700)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join("testdata/registry-v0", e.Name()))
		os.WriteFile(filepath.Join(dir, "peers", e.Name()), b, 0o600)
	}
	st := newStore(NewFileStore(filepath.Join(dir, "peers")), testLogger(t))
	recs, err := st.load(newPool(netip.MustParsePrefix("100.96.0.0/16"), netip.MustParsePrefix("fd7a:6761::/64")))
	if err != nil || len(recs) != 1 || st.quarantined.Load() != 0 {
		t.Fatalf("load: %d records, %v, quarantined %d", len(recs), err, st.quarantined.Load())
	}
	for _, r := range recs {
		want := &policy.VPNAccess{Allow: []policy.Destination{dst("10.10.0.0/16", policy.ProtoAny), dst("10.20.0.5/32", policy.ProtoTCP, 22, 443)},
			DNS: []netip.Addr{netip.MustParseAddr("10.0.0.53")}, Routes: []netip.Prefix{netip.MustParsePrefix("10.10.0.0/16")}, FullTunnel: true}
		if r.Identity != "alice" || r.Rule != "engineering" || r.Address.String() != "100.96.0.7" || !sameAccess(r.Access, want) || r.Suspended != nil {
			t.Fatalf("v0 record: %+v access %+v", r, r.Access)
		}
		if _, err := r.chain(); err != nil {
			t.Fatal(err)
		}
		// Saved again, it is written in today's format.
		if err := st.save(r); err != nil {
			t.Fatal(err)
		}
		if got := storedRecord(t, dir, r.Fingerprint); got.Version != RecordVersion {
			t.Fatalf("resaved version %d", got.Version)
		}
	}
}

func TestUnreadableRecordQuarantinedAtStart(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "peers"), 0o700)
	bad := filepath.Join(dir, "peers", fp(9)+".json")
	os.WriteFile(bad, []byte(`{"fingerprint": trunc`), 0o600)
	newKeyFile(t, filepath.Join(dir, KeyFileName)) // the registry holds a peer: the key exists
	env := startServer(t, &fakeAuth{}, ca, dir, nil)
	if st := env.srv.Stats(); st.Quarantined != 1 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Fatal("unreadable record left in place")
	}
	q, _ := filepath.Glob(filepath.Join(dir, "peers", "quarantine", fp(9)+".json.*"))
	if len(q) != 1 {
		t.Fatalf("quarantine: %v", q)
	}
	if b, _ := os.ReadFile(q[0]); string(b) != `{"fingerprint": trunc` {
		t.Fatalf("quarantined content changed: %q", b)
	}
}

var _ = reval.Allow

// TestDoorNotPermittedAudited: enrolling under a rule without VPN access
// is refused and audited as outcome=deny code=door_not_permitted (it was
// code=allowed).
func TestDoorNotPermittedAudited(t *testing.T) {
	ca := newTestCA(t)
	auth := &fakeAuth{}
	auth.set("dave", policy.Decision{Allowed: true, Code: policy.CodeAllowed, Rule: "wifi-only", WiFi: policy.WiFi{Permitted: true}})
	env := startServer(t, auth, ca, t.TempDir(), nil)
	var al auditLog
	env.srv.SetAuditor(&al)
	if code, body := env.post(ca.issue(t, "dave", false), keyBody(newPub(t))); code != 403 {
		t.Fatalf("dave: %d %s", code, body)
	}
	evs := al.events()
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	line, err := audit.AppendJSON(nil, &evs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"outcome":"deny"`, `"code":"door_not_permitted"`, `"rule":"wifi-only"`, `gives no VPN access`} {
		if !strings.Contains(string(line), want) {
			t.Errorf("audit line lacks %s: %s", want, line)
		}
	}
}
