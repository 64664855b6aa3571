package vpn_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/store/postgres"
	"github.com/gatehouse/gatehouse/vpn"
	"github.com/gatehouse/gatehouse/vpn/pgstore"
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
	pg := pgtest.Start(t)
	dsn := pg.CreateDatabase("gh_site")
	open := func() *postgres.DB {
		db, err := postgres.Open(postgres.Config{DSN: dsn, MaxConns: 8}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		return db
	}
	keyFile := filepath.Join(t.TempDir(), "site-wg.key")
	var nodes []*node
	for i := range n {
		db := open()
		dir := t.TempDir()
		st := pgstore.New(db, pgstore.Config{Site: "hq", Node: fmt.Sprint("node", i), Cache: filepath.Join(dir, "vpn-registry.cache")}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		env := vpn.StartNode(t, auth, ca, dir, keyFile, func(s *vpn.Server) {
			s.SetStore(st)
			s.SetLeader(st.Leader)
		})
		go func() { defer close(done); st.Run(ctx, env.Server()) }()
		t.Cleanup(func() { cancel(); <-done })
		waitFor(t, 10*time.Second, "node connected to the database", func() bool { return st.Available() == nil })
		if i == 0 {
			waitFor(t, 10*time.Second, "node 0 holds the re-validation lease", st.Leader)
		}
		nodes = append(nodes, &node{env: env, st: st})
	}
	return nodes, open()
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
