package vpn_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/store/postgres"
	"github.com/gatehouse/gatehouse/vpn"
	"github.com/gatehouse/gatehouse/vpn/pgstore"
	"github.com/gatehouse/gatehouse/vpn/vpntest"
)

// propagation is the bound: a change made on one node is on every
// node's device and filter within it.
const propagation = 2 * time.Second

type node struct {
	env *vpn.TestEnv
	st  *pgstore.Store
}

// site starts n nodes of site "hq" on one fresh PostgreSQL database, with
// one WireGuard key file; node 0 starts first and takes the re-validation
// lease.
func site(t *testing.T, n int, auth *vpn.FakeAuth, ca *vpn.TestCA) ([]*node, *postgres.DB) {
	s := newSite(t, auth, ca)
	var nodes []*node
	for i := range n {
		nodes = append(nodes, s.start(t, fmt.Sprint("node", i), t.TempDir(), 0, true))
		if i == 0 {
			waitFor(t, 10*time.Second, "node 0 holds the re-validation lease", nodes[0].st.Leader)
		}
	}
	return nodes, s.open(t)
}

// siteEnv is one PostgreSQL and the site's shared WireGuard key.
type siteEnv struct {
	pg      *pgtest.Server
	dsn     string
	keyFile string
	auth    *vpn.FakeAuth
	ca      *vpn.TestCA
	resync  time.Duration
}

func newSite(t *testing.T, auth *vpn.FakeAuth, ca *vpn.TestCA) *siteEnv {
	pg := pgtest.Start(t)
	keyFile := filepath.Join(t.TempDir(), "site-wg.key")
	vpn.NewKeyFile(t, keyFile) // a site's key is made before its nodes start (gatehouse vpn genkey)
	return &siteEnv{pg: pg, dsn: pg.CreateDatabase("gh_site"), keyFile: keyFile, auth: auth, ca: ca}
}

func (s *siteEnv) open(t *testing.T) *postgres.DB {
	db, err := postgres.Open(postgres.Config{DSN: s.dsn, MaxConns: 8, ConnectTimeout: time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// start starts a node with its state in dir (port 0: a free one); it
// waits for the database connection if connected is set.
func (s *siteEnv) start(t *testing.T, name, dir string, port int, connected bool) *node {
	st := pgstore.New(s.open(t), pgstore.Config{Site: "hq", Node: name, Cache: filepath.Join(dir, "vpn-registry.cache"),
		ResyncEvery: s.resync, CacheEvery: s.resync, OpTimeout: 2 * time.Second}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	env := vpn.StartNode(t, s.auth, s.ca, dir, s.keyFile, port, func(v *vpn.Server) {
		v.SetStore(st)
		v.SetLeader(st.Revalidates)
	})
	go func() { defer close(done); st.Run(ctx, env.Server()) }()
	t.Cleanup(func() { cancel(); <-done })
	if connected {
		waitFor(t, 10*time.Second, name+" connected to the database", func() bool { return st.Available() == nil })
	}
	return &node{env: env, st: st}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > d {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// Enroll on node A, connect through node B (same site key, same pool);
// revoke on A's re-validation: B cuts the peer within 2 s.
func TestTwoNodesEnrollOnAConnectViaB(t *testing.T) {
	ca := vpn.NewTestCA(t)
	auth := &vpn.FakeAuth{}
	auth.Allow("alice")
	nodes, _ := site(t, 2, auth, ca)
	a, b := nodes[0], nodes[1]
	if a.env.Server().PublicKey() != b.env.Server().PublicKey() {
		t.Fatal("the nodes of a site have different WireGuard keys")
	}
	if b.st.Leader() {
		t.Fatal("both nodes hold the re-validation lease")
	}

	text, err := a.env.Enroll(ca.Client(t, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, propagation, "enrollment on A reaches B", func() bool { return b.env.Server().Stats().Peers == 1 })
	t.Logf("enrollment on A on B's device after %v", took)
	client := vpn.ClientVia(t, text, b.env.Endpoint())
	if err := client.Reach(5 * time.Second); err != nil {
		t.Fatalf("client enrolled on A cannot reach a service through B: %v", err)
	}

	// Revocation: A (the leaseholder) re-validates, as after a reload.
	auth.Revoke("alice")
	start := time.Now()
	a.env.Server().TriggerRevalidate()
	waitFor(t, propagation, "A suspends the revoked peer", func() bool { return a.env.Server().Stats().Suspended == 1 })
	took = waitFor(t, propagation, "B cuts the revoked peer", func() bool { return b.env.Server().Stats().Suspended == 1 })
	t.Logf("revocation on A cut on B after %v (from the trigger: %v)", took, time.Since(start))
	if err := client.Reach(700 * time.Millisecond); err == nil {
		t.Fatal("revoked client still reaches a service through B")
	}
	if rep := b.env.Server().LastRevalidation(); rep.Judged != 0 {
		t.Errorf("B re-validated without the lease: %v", rep)
	}

	// A restoration on A, and a removal on B, reach the other node.
	auth.Allow("alice")
	a.env.Server().TriggerRevalidate()
	waitFor(t, propagation, "B restores the peer", func() bool { return b.env.Server().Stats().Suspended == 0 })
	// (Reaching through the restored peer takes the client's rekey
	// timeout; vpn's suspension tests cover it on one node.)
	if _, err := b.env.Server().RemovePeers("alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, propagation, "a removal on B reaches A", func() bool { return a.env.Server().Stats().Peers == 0 })
}

// Enrollments on both nodes at once never lease one address twice, and
// every acknowledged one is on both nodes.
func TestTwoNodesConcurrentEnrollments(t *testing.T) {
	ca := vpn.NewTestCA(t)
	auth := &vpn.FakeAuth{}
	const each = 12
	for i := range 2 * each {
		auth.Allow(fmt.Sprint("user", i))
	}
	nodes, db := site(t, 2, auth, ca)
	var mu sync.Mutex
	addrs := map[netip.Addr]string{}
	var wg sync.WaitGroup
	for i := range 2 * each {
		n := nodes[i%2]
		cn := fmt.Sprint("user", i)
		cert := ca.Client(t, cn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			text, err := n.env.Enroll(cert)
			if err != nil {
				t.Errorf("%s: %v", cn, err)
				return
			}
			a := vpn.Addr(t, text)
			mu.Lock()
			defer mu.Unlock()
			if o, dup := addrs[a]; dup {
				t.Errorf("address %s handed to %s and %s", a, o, cn)
			}
			addrs[a] = cn
		}()
	}
	wg.Wait()
	var rows, distinct int
	if err := db.Pool().QueryRow(context.Background(), "SELECT count(*), count(DISTINCT address) FROM vpn_peers WHERE site = 'hq'").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != 2*each || distinct != rows {
		t.Fatalf("database: %d rows, %d distinct addresses; want %d", rows, distinct, 2*each)
	}
	for i, n := range nodes {
		waitFor(t, propagation, fmt.Sprintf("node %d has every peer", i), func() bool { return n.env.Server().Stats().Peers == 2*each })
	}
}

// PostgreSQL stops: connected peers keep working, enrollment answers 503
// with a readable message; a node restarted during the outage configures
// every peer from its local cache; when the database returns, enrollment
// works again.
func TestNodeRidesOutDatabaseOutage(t *testing.T) {
	ca := vpn.NewTestCA(t)
	auth := &vpn.FakeAuth{}
	auth.Allow("alice")
	auth.Allow("bob")
	s := newSite(t, auth, ca)
	s.resync = 200 * time.Millisecond // the cache follows within it
	dir := t.TempDir()
	n := s.start(t, "a", dir, 0, true)
	text, err := n.env.Enroll(ca.Client(t, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	client := vpn.ClientVia(t, text, n.env.Endpoint())
	if err := client.Reach(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * s.resync) // a resync writes the cache

	s.pg.Stop()
	waitFor(t, 10*time.Second, "the node sees the outage", func() bool { return n.st.Available() != nil })
	_, err = n.env.Enroll(ca.Client(t, "bob"))
	var ee *vpn.EnrollError
	if !errors.As(err, &ee) || ee.Status != http.StatusServiceUnavailable || !strings.Contains(ee.Error(), "registry is unavailable") {
		t.Fatalf("enrollment during the outage: %v", err)
	}
	if err := client.Reach(5 * time.Second); err != nil {
		t.Fatalf("connected peer cut by the database outage: %v", err)
	}
	// A removal that cannot reach the database is refused whole: cut here
	// only, the peer would come back from the database afterwards.
	if _, err := n.env.Server().RemovePeers("alice"); err == nil || !errors.Is(err, vpn.ErrUnavailable) {
		t.Fatalf("removal during the outage: %v", err)
	}
	if got := n.env.Server().Stats().Peers; got != 1 {
		t.Fatalf("after a refused removal: %d peers", got)
	}

	// Restart the node during the outage, on the same port and state_dir.
	port := n.env.Port()
	if err := n.env.Stop(); err != nil {
		t.Fatal(err)
	}
	n = s.start(t, "a", dir, port, false)
	if got := n.env.Server().Stats().Peers; got != 1 {
		t.Fatalf("restarted during the outage: %d peers, want 1 (from the cache)", got)
	}
	// The client finds out the node restarted after its rekey timeout
	// (about 15 s) and handshakes again; dial until then.
	waitFor(t, 40*time.Second, "the peer is served after a restart during the outage", func() bool { return client.Reach(2*time.Second) == nil })

	s.pg.Restart()
	waitFor(t, 15*time.Second, "the node reconnects", func() bool { return n.st.Available() == nil })
	if _, err := n.env.Enroll(ca.Client(t, "bob")); err != nil {
		t.Fatalf("enrollment after the outage: %v", err)
	}
	if got := n.env.Server().Stats().Peers; got != 2 {
		t.Fatalf("after the outage: %d peers", got)
	}
}

// TestHelperNode is not a test: it is node A of
// TestKillNodeMidEnrollmentBurst, run as a subprocess so it can be killed.
func TestHelperNode(t *testing.T) {
	dir := os.Getenv("GATEHOUSE_TEST_NODE_DIR")
	if dir == "" {
		t.Skip("run by TestKillNodeMidEnrollmentBurst")
	}
	ca := vpn.LoadCA(t, dir)
	auth := &vpn.FakeAuth{}
	for i := range burstSize {
		auth.Allow(fmt.Sprint("burst", i))
	}
	s := &siteEnv{dsn: os.Getenv("GATEHOUSE_TEST_NODE_DSN"), keyFile: filepath.Join(dir, "site-wg.key"), auth: auth, ca: ca}
	n := s.start(t, "a", t.TempDir(), 0, true)
	os.WriteFile(filepath.Join(dir, "url.tmp"), []byte(n.env.URL()), 0o600)
	os.Rename(filepath.Join(dir, "url.tmp"), filepath.Join(dir, "url"))
	time.Sleep(2 * time.Minute) // until killed
}

const burstSize = 120

// Node A is killed (SIGKILL) in the middle of an enrollment burst spread
// over A and B: every enrollment a client got an answer for is in the
// database with the address it was given, no address is leased twice, and
// node B has every peer.
func TestKillNodeMidEnrollmentBurst(t *testing.T) {
	ca := vpn.NewTestCA(t)
	dir := t.TempDir()
	ca.SaveCA(t, dir)
	auth := &vpn.FakeAuth{}
	for i := range burstSize {
		auth.Allow(fmt.Sprint("burst", i))
	}
	s := newSite(t, auth, ca)
	s.keyFile = filepath.Join(dir, "site-wg.key") // shared with node A, a subprocess
	vpn.NewKeyFile(t, s.keyFile)
	b := s.start(t, "b", t.TempDir(), 0, true)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperNode$", "-test.count=1")
	cmd.Env = append(os.Environ(), "GATEHOUSE_TEST_NODE_DIR="+dir, "GATEHOUSE_TEST_NODE_DSN="+s.dsn)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	var urlA string
	waitFor(t, 30*time.Second, "node A (subprocess) up", func() bool {
		u, err := os.ReadFile(filepath.Join(dir, "url"))
		urlA = string(u)
		return err == nil
	})

	type ack struct{ fp, addr string }
	var mu sync.Mutex
	var acked []ack
	var ackedA int
	certs := make([]tls.Certificate, burstSize) // issued here: the test CA is not safe for concurrent use
	for i := range certs {
		certs[i] = ca.Client(t, fmt.Sprint("burst", i))
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				cert := certs[i]
				url := b.env.URL()
				if i%2 == 0 {
					url = urlA
				}
				text, err := vpn.EnrollAt(ca, url, cert)
				if err != nil {
					if url != urlA {
						t.Errorf("enrollment on B: %v", err)
					}
					continue // not acknowledged (node A dead): the client retries elsewhere
				}
				sum := sha256.Sum256(cert.Leaf.Raw)
				mu.Lock()
				acked = append(acked, ack{hex.EncodeToString(sum[:]), vpn.Addr(t, text).String()})
				if url == urlA {
					ackedA++
					if ackedA == 15 {
						cmd.Process.Kill() // mid-burst
					}
				}
				mu.Unlock()
			}
		}()
	}
	for i := range burstSize {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	<-exited
	if ackedA < 15 {
		t.Fatalf("node A acknowledged only %d enrollments before the burst ended", ackedA)
	}

	db := s.open(t)
	rows, err := db.Pool().Query(context.Background(), "SELECT fingerprint, host(address) FROM vpn_peers WHERE site = 'hq'")
	if err != nil {
		t.Fatal(err)
	}
	inDB := map[string]string{}
	byAddr := map[string]string{}
	for rows.Next() {
		var fp, addr string
		if err := rows.Scan(&fp, &addr); err != nil {
			t.Fatal(err)
		}
		if o, dup := byAddr[addr]; dup {
			t.Errorf("address %s leased to %s and %s", addr, o, fp)
		}
		byAddr[addr], inDB[fp] = fp, addr
	}
	for _, a := range acked {
		if got := inDB[a.fp]; got != a.addr {
			t.Errorf("acknowledged enrollment %s at %s: in the database at %q", a.fp[:12], a.addr, got)
		}
	}
	t.Logf("%d acknowledged (%d by A before and around its kill), %d rows", len(acked), ackedA, len(inDB))
	waitFor(t, propagation, "node B has every peer", func() bool { return b.env.Server().Stats().Peers == len(inDB) })
}

// BenchmarkRestart100kPostgres restarts a node whose site has 100,000
// peers in PostgreSQL, 1,000 of which had a handshake with this node in
// the last hour: "s-up" until the device is up with those, "s-handshake"
// until a real WireGuard client of one of them completed a handshake,
// "s-all" until every peer is on the device. -benchtime 1x.
func BenchmarkRestart100kPostgres(b *testing.B) {
	const n, recent = 100000, 1000
	pg := pgtest.Start(b)
	dsn := pg.CreateDatabase("gh_restart")
	db, err := postgres.Open(postgres.Config{DSN: dsn}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	ca := vpn.NewTestCA(b)
	leaf := ca.Client(b, "alice")
	clientKey, _ := vpn.GenerateKey()
	st := pgstore.New(db, pgstore.Config{Site: "hq"}, nil)
	dir := b.TempDir()
	var rb strings.Builder
	now := time.Now()
	// Insert through Save in parallel (the real row format).
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := vpntest.Record(b, 0, "100.96.0.2")
			base.Chain = [][]byte{leaf.Certificate[0], leaf.Certificate[0]}
			base.Identity, base.Access = "alice", &vpn.AccessGrant{Allow: []vpn.GrantDestination{{Prefix: netip.MustParsePrefix("10.10.0.0/16")}}}
			for i := w; i < n; i += 8 {
				r := *base
				r.Fingerprint = vpntest.FP(i)
				rand.Read(r.PublicKey[:])
				if i == 0 {
					r.PublicKey = clientKey.Public()
				}
				o := uint32(i + 2)
				r.Address = netip.AddrFrom4([4]byte{100, 96 + byte(o>>16), byte(o >> 8), byte(o)})
				if err := st.Save(&r); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := range recent {
		fmt.Fprintf(&rb, "%s %d\n", vpntest.FP(i), now.Add(-5*time.Minute).Unix())
	}
	auth := &vpn.FakeAuth{}
	auth.Allow("alice")
	keyFile := filepath.Join(dir, "wg.key")
	vpn.NewKeyFile(b, keyFile)
	var up, hs, all time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		os.WriteFile(filepath.Join(dir, "recent-handshakes"), []byte(rb.String()), 0o600)
		b.StartTimer()
		start := time.Now()
		srv, port, stop := vpn.StartNodeB(b, auth, ca, dir, keyFile, "100.96.0.0/15", pgstore.New(db, pgstore.Config{Site: "hq"}, nil))
		<-srv.Ready()
		up += time.Since(start)
		c := vpn.WGClientFor(b, clientKey, srv.PublicKey(), port, "100.96.0.2")
		for !c.Handshaken() {
			if time.Since(start) > 3*time.Minute {
				b.Fatal("no handshake")
			}
			time.Sleep(5 * time.Millisecond)
		}
		hs += time.Since(start)
		<-srv.AllOnDevice()
		all += time.Since(start)
		b.StopTimer()
		stop()
		b.StartTimer()
	}
	b.ReportMetric(up.Seconds()/float64(b.N), "s-up")
	b.ReportMetric(hs.Seconds()/float64(b.N), "s-handshake")
	b.ReportMetric(all.Seconds()/float64(b.N), "s-all")
}

// A revocation while PostgreSQL is down still cuts: with no lease holder,
// every node re-validates its own device; when the database is back the
// lease holder writes the cut, so no node restores the peer for good.
func TestRevocationDuringDatabaseOutage(t *testing.T) {
	ca := vpn.NewTestCA(t)
	auth := &vpn.FakeAuth{}
	auth.Allow("alice")
	s := newSite(t, auth, ca)
	a := s.start(t, "a", t.TempDir(), 0, true)
	waitFor(t, 10*time.Second, "A holds the lease", a.st.Leader)
	b := s.start(t, "b", t.TempDir(), 0, true)
	if _, err := a.env.Enroll(ca.Client(t, "alice")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, propagation, "B has the peer", func() bool { return b.env.Server().Stats().Peers == 1 })

	s.pg.Stop()
	waitFor(t, 10*time.Second, "B sees the outage", func() bool { return b.st.Available() != nil })
	auth.Revoke("alice")
	b.env.Server().TriggerRevalidate()
	waitFor(t, propagation, "B cuts the revoked peer without the database", func() bool { return b.env.Server().Stats().Suspended == 1 })

	s.pg.Restart()
	db := s.open(t)
	waitFor(t, 20*time.Second, "the cut is written once the database is back", func() bool {
		var susp bool
		err := db.Pool().QueryRow(context.Background(), "SELECT suspended FROM vpn_peers WHERE site = 'hq'").Scan(&susp)
		return err == nil && susp
	})
	for _, n := range []*node{a, b} {
		waitFor(t, propagation, "every node keeps the peer suspended", func() bool { return n.env.Server().Stats().Suspended == 1 })
	}
}

// A node restarted with the registry in PostgreSQL puts the peers that had
// a handshake with it in the last hour on the device first, then takes in
// the rest of the registry.
func TestRestartRecentFirst(t *testing.T) {
	ca := vpn.NewTestCA(t)
	auth := &vpn.FakeAuth{}
	for _, cn := range []string{"alice", "bob", "carol"} {
		auth.Allow(cn)
	}
	s := newSite(t, auth, ca)
	dir := t.TempDir()
	n := s.start(t, "a", dir, 0, true)
	text, err := n.env.Enroll(ca.Client(t, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	for _, cn := range []string{"bob", "carol"} {
		if _, err := n.env.Enroll(ca.Client(t, cn)); err != nil {
			t.Fatal(err)
		}
	}
	client := vpn.ClientVia(t, text, n.env.Endpoint())
	if err := client.Reach(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	port := n.env.Port()
	if err := n.env.Stop(); err != nil { // saves the handshake times
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "recent-handshakes"))
	if err != nil || strings.Count(string(b), "\n") != 1 {
		t.Fatalf("handshake times saved: %q, %v", b, err)
	}
	n = s.start(t, "a", dir, port, true)
	select {
	case <-n.env.Server().AllOnDevice():
	case <-time.After(10 * time.Second):
		t.Fatal("the rest of the registry never came")
	}
	if got := n.env.Server().Stats().Peers; got != 3 {
		t.Fatalf("after the restart: %d peers", got)
	}
	waitFor(t, 40*time.Second, "alice served again", func() bool { return client.Reach(2*time.Second) == nil })
}
