package vpn

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

func TestRestartRestoresPeers(t *testing.T) {
	checkGoroutines(t)
	ca := newTestCA(t)
	auth := &fakeAuth{}
	auth.set("alice", allow("engineering", engineeringAccess))
	dir := t.TempDir()
	env := startServer(t, auth, ca, dir, nil)
	text, err := env.enroll(ca.issue(t, "alice", false))
	if err != nil {
		t.Fatal(err)
	}
	pub := env.srv.PublicKey()
	if err := env.stop(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "wg.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("wg.key: %v %v", fi, err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "peers"))
	if len(entries) != 1 {
		t.Fatalf("peer files: %v", entries)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "peers", entries[0].Name()))
	for _, field := range []string{`"identity":"alice"`, `"rule":"engineering"`, `"chain":["`, `"address":"100.96.0.2"`, `"cert_serial"`, `"not_after"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("record lacks %s: %s", field, b)
		}
	}

	// Same state dir and port: the old client config keeps working.
	env2 := startServer(t, auth, ca, dir, func(c *Config) { c.ListenPort = env.cfg.ListenPort; c.Endpoint = env.cfg.Endpoint })
	if env2.srv.PublicKey() != pub {
		t.Fatal("server key changed across restart")
	}
	client := newWGClient(t, parseWGQuick(t, text))
	if err := client.tcpEcho(svcSSH, 22, reachTimeout); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	// A new enrollment does not get the restored peer's address.
	auth.set("bob", allow("engineering", engineeringAccess))
	st, body := env2.post(ca.issue(t, "bob", false), keyBody(newPub(t)))
	if st != 200 || !strings.Contains(body, `"address":"100.96.0.3"`) {
		t.Fatalf("bob: %d %s", st, body)
	}
}

// writeRecord stores a synthetic record as the server would.
func writeRecord(t testing.TB, st *store, fp string, addr string, key Key, updated time.Time) {
	r := &record{
		Fingerprint: fp, Identity: "x", IdentityKey: "cn/" + fp[:8], PublicKey: key,
		Address: netip.MustParseAddr(addr), Rule: "engineering", Access: engineeringAccess,
		Updated: updated, NotAfter: updated.Add(time.Hour),
	}
	if err := st.save(r); err != nil {
		t.Fatal(err)
	}
}

func fp(i int) string { return fmt.Sprintf("%064x", i) }

func TestStoreLoadRepairs(t *testing.T) {
	dir := t.TempDir()
	st := newStore(NewFileStore(dir), testLogger(t))
	os.MkdirAll(dir, 0o700)
	now := time.Now()
	k := func() Key { return newPub(t) }
	shared := k()
	writeRecord(t, st, fp(1), "100.96.0.2", k(), now)
	writeRecord(t, st, fp(2), "100.96.0.2", k(), now.Add(time.Second)) // same address, newer: wins
	writeRecord(t, st, fp(3), "100.97.0.2", k(), now)                  // outside the pool
	writeRecord(t, st, fp(4), "100.96.0.9", shared, now)
	writeRecord(t, st, fp(5), "100.96.0.10", shared, now.Add(time.Second)) // same key, newer: wins
	writeRecord(t, st, fp(6), "100.96.0.1", k(), now)                      // the server's own address
	os.WriteFile(filepath.Join(dir, fp(7)+".json"), []byte("{garbage"), 0o600)
	os.WriteFile(filepath.Join(dir, "."+fp(8)+".json.tmp123"), []byte("partial"), 0o600)

	p := newPool(netip.MustParsePrefix("100.96.0.0/16"), netip.Prefix{})
	recs, err := st.load(p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range recs {
		got = append(got, k[60:])
	}
	if len(recs) != 2 || recs[fp(2)] == nil || recs[fp(5)] == nil {
		t.Fatalf("kept %v", got)
	}
	if len(p.used) != 2 {
		t.Errorf("leases: %v", p.used)
	}
	// Nothing is deleted: the losers and the unreadable file are
	// quarantined; only the unacknowledged temporary file is gone.
	names := func(d string) []string {
		ents, _ := os.ReadDir(d)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	if got := names(dir); len(got) != 3 || !slices.Contains(got, "quarantine") {
		t.Errorf("files left: %v", got)
	}
	q := names(filepath.Join(dir, "quarantine"))
	for _, i := range []int{1, 3, 4, 6, 7} {
		if !slices.ContainsFunc(q, func(n string) bool { return strings.HasPrefix(n, fp(i)+".json.") }) {
			t.Errorf("record %d not quarantined: %v", i, q)
		}
	}
	if len(q) != 5 || st.quarantined.Load() != 5 {
		t.Errorf("quarantined %v (counted %d)", q, st.quarantined.Load())
	}
	// The freed addresses are leasable again.
	if o, ok := p.allocate("new"); !ok || o != 3 {
		t.Errorf("allocate: %d %v", o, ok)
	}
}

func TestPool(t *testing.T) {
	p := newPool(netip.MustParsePrefix("10.0.0.0/29"), netip.MustParsePrefix("fd00::/120"))
	var got []string
	for {
		o, ok := p.allocate("x")
		if !ok {
			break
		}
		a, a6 := p.addrs(o)
		got = append(got, a.String()+"|"+a6.String())
	}
	want := "10.0.0.2|fd00::2 10.0.0.3|fd00::3 10.0.0.4|fd00::4 10.0.0.5|fd00::5 10.0.0.6|fd00::6"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %v", got)
	}
	p.release(4)
	if o, ok := p.allocate("y"); !ok || o != 4 {
		t.Fatalf("reuse: %d %v", o, ok)
	}
	if p.claim(7, "z") || p.claim(1, "z") || p.claim(3, "z") {
		t.Fatal("claimed broadcast, gateway or a held lease")
	}
	big := newPool(netip.MustParsePrefix("100.96.0.0/16"), netip.MustParsePrefix("fd7a::/64"))
	if _, a6 := big.addrs(0x1ff); a6.String() != "fd7a::1ff" {
		t.Fatal(a6)
	}
}

// BenchmarkRestore measures Run's restore path for 10,000 stored peers: read
// and check the records, lease their addresses, compile the filter, and add
// every peer to a wireguard-go device. "total" is what Run does before the
// device is up: with no recent handshakes saved, every peer of a registry
// this large is added after it (recent.go); "device" adds them all.
func BenchmarkRestore10k(b *testing.B) {
	dir := b.TempDir()
	cfg := Config{Enabled: true, Endpoint: "127.0.0.1:1", AddressPool: "100.96.0.0/16", AddressPool6: "fd7a::/64",
		StateDir: dir, UseNetstack: true, ListenPort: freeUDPPort(b)}
	writeStoredPeers(b, dir, 10000)
	newSrv := func(b *testing.B) *Server {
		srv, err := New(cfg, &fakeAuth{}, &tls.Config{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		return srv
	}
	// registry: read, check and lease the records, compile the filter.
	b.Run("registry", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			srv := newSrv(b)
			if err := srv.restore(); err != nil {
				b.Fatal(err)
			}
			if srv.peerCount() != 10000 {
				b.Fatal(srv.peerCount())
			}
		}
	})
	// total: what Run does before the device goes up.
	b.Run("total", func(b *testing.B) {
		priv, _ := GenerateKey()
		for i := 0; i < b.N; i++ {
			srv := newSrv(b)
			b.StopTimer()
			tdev, err := srv.openTUN()
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := srv.restore(); err != nil {
				b.Fatal(err)
			}
			srv.dev = srv.newDevice(tdev)
			if _, err := srv.configureDevice(priv); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			srv.dev.Close()
			b.StartTimer()
		}
	})
	// device: adding 10,000 peers to wireguard-go, the first transaction
	// and the background chunks (dominated by its per-peer X25519
	// precomputation).
	b.Run("device", func(b *testing.B) {
		srv := newSrv(b)
		if err := srv.restore(); err != nil {
			b.Fatal(err)
		}
		priv, _ := GenerateKey()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			tdev, err := srv.openTUN()
			if err != nil {
				b.Fatal(err)
			}
			srv.dev = srv.newDevice(tdev)
			srv.allOnDevice = make(chan struct{})
			b.StartTimer()
			later, err := srv.configureDevice(priv)
			if err != nil {
				b.Fatal(err)
			}
			var wg sync.WaitGroup
			srv.addLater(context.Background(), &wg, later)
			wg.Wait()
			b.StopTimer()
			srv.dev.Close()
			b.StartTimer()
		}
	})
}

// writeStoredPeers writes n records of CN "alice" (engineering) into dir.
func writeStoredPeers(b *testing.B, dir string, n int) {
	fs := NewFileStore(filepath.Join(dir, "peers"))
	os.MkdirAll(fs.Dir, 0o700)
	ca := newTestCA(b)
	leaf := ca.issue(b, "alice", false)
	now := time.Now()
	for i := 0; i < n; i++ {
		r := &record{
			Fingerprint: fp(i), Identity: "alice", IdentityKey: "cn/alice", PublicKey: newPub(b),
			Address: netip.AddrFrom4([4]byte{100, 96, byte((i + 2) >> 8), byte(i + 2)}), Rule: "engineering",
			Access: engineeringAccess, Chain: [][]byte{leaf.Certificate[0], ca.cert.Raw}, Updated: now,
			NotAfter: leaf.Leaf.NotAfter,
		}
		data, _ := EncodeRecord(r.stored())
		os.WriteFile(fs.path(r.Fingerprint), data, 0o600) // no fsync: setup only
	}
}

// BenchmarkRevalidate1k measures one re-validation pass over 1,000 peers
// with an authorizer that answers at once: the floor of the
// revocation-to-cut time (a pass is started every RevalidateEvery, or by
// Revalidate after a policy reload; with the real policy, add the
// authorizer's latency per peer).
func BenchmarkRevalidate1k(b *testing.B) {
	dir := b.TempDir()
	writeStoredPeers(b, dir, 1000)
	cfg := Config{Enabled: true, Endpoint: "127.0.0.1:1", AddressPool: "100.96.0.0/16", StateDir: dir, UseNetstack: true, ListenPort: freeUDPPort(b)}
	auth := &fakeAuth{}
	auth.set("alice", allow("engineering", engineeringAccess))
	srv, err := New(cfg, auth, &tls.Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.restore(); err != nil {
		b.Fatal(err)
	}
	tdev, err := srv.openTUN()
	if err != nil {
		b.Fatal(err)
	}
	srv.dev = srv.newDevice(tdev)
	defer srv.dev.Close()
	priv, _ := GenerateKey()
	if _, err := srv.configureDevice(priv); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		srv.Revalidate(context.Background())
	}
	b.StopTimer()
	// Revoke everyone: the pass that cuts (suspends) 1,000 peers.
	auth.set("alice", policy.Decision{Code: policy.CodeRevoked})
	start := time.Now()
	srv.Revalidate(context.Background())
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-to-cut-1k")
	if st := srv.Stats(); st.Suspended != 1000 {
		b.Fatal(st.Suspended)
	}
}

// BenchmarkRestart100kRecentFirst restarts a node with 100,000 stored
// peers, 1,000 of which had a handshake with it in the last hour: "up" is
// the time until the device is up with those (a real WireGuard client of
// one of them then handshakes: "handshake"), "all" until every peer is on
// the device. Run with -benchtime 1x: the setup writes 100,000 files.
func BenchmarkRestart100kRecentFirst(b *testing.B) {
	const n, recent = 100000, 1000
	dir := b.TempDir()
	st := NewFileStore(filepath.Join(dir, "peers"))
	os.MkdirAll(st.Dir, 0o700)
	ca := newTestCA(b)
	leaf := ca.issue(b, "alice", false)
	now := time.Now()
	clientKey, _ := GenerateKey()
	var rb strings.Builder
	for i := 0; i < n; i++ {
		o := uint32(i + 2)
		pub := newPub(b)
		if i == 0 {
			pub = clientKey.Public()
		}
		r := &record{
			Fingerprint: fp(i), Identity: "alice", IdentityKey: "cn/alice", PublicKey: pub,
			Address: netip.AddrFrom4([4]byte{100, 96 + byte(o>>16), byte(o >> 8), byte(o)}), Rule: "engineering",
			Access: engineeringAccess, Chain: [][]byte{leaf.Certificate[0], ca.cert.Raw}, Updated: now,
			NotAfter: leaf.Leaf.NotAfter,
		}
		data, _ := EncodeRecord(r.stored())
		os.WriteFile(st.path(r.Fingerprint), data, 0o600) // no fsync: setup only
		if i < recent {
			fmt.Fprintf(&rb, "%s %d\n", r.Fingerprint, now.Add(-5*time.Minute).Unix())
		}
	}
	auth := &fakeAuth{}
	auth.set("alice", allow("engineering", engineeringAccess))
	var up, hs, all time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		os.WriteFile(filepath.Join(dir, "recent-handshakes"), []byte(rb.String()), 0o600)
		port := freeUDPPort(b)
		cfg := Config{Enabled: true, Endpoint: "127.0.0.1:1", AddressPool: "100.96.0.0/15", StateDir: dir, UseNetstack: true,
			ListenPort: port, EnrollListen: "127.0.0.1:0", RevalidateEvery: policy.Duration{Duration: time.Hour}}
		srv, err := New(cfg, auth, &tls.Config{Certificates: []tls.Certificate{ca.issue(b, "gh", true)}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { errc <- srv.Run(ctx) }()
		select {
		case <-srv.Ready():
		case err := <-errc:
			b.Fatal(err)
		}
		up += time.Since(start)
		q := &wgQuick{PrivateKey: clientKey, Address: []netip.Prefix{netip.MustParsePrefix("100.96.0.2/32")}, PeerKey: srv.PublicKey(),
			Endpoint: fmt.Sprintf("127.0.0.1:%d", port), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.96.0.1/32")}, Keepalive: 1}
		c := newWGClient(b, q)
		for {
			text, _ := c.dev.IpcGet()
			if strings.Contains(text, "last_handshake_time_sec=") && !strings.Contains(text, "last_handshake_time_sec=0\n") {
				break
			}
			if time.Since(start) > 2*time.Minute {
				b.Fatal("no handshake")
			}
			time.Sleep(5 * time.Millisecond)
		}
		hs += time.Since(start)
		<-srv.allOnDevice
		all += time.Since(start)
		b.StopTimer()
		c.dev.Close()
		cancel()
		<-errc
		b.StartTimer()
	}
	b.ReportMetric(up.Seconds()/float64(b.N), "s-up")
	b.ReportMetric(hs.Seconds()/float64(b.N), "s-handshake")
	b.ReportMetric(all.Seconds()/float64(b.N), "s-all")
}
