package radius

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/policytest"
	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/store/postgres"
	"github.com/gatehouse/gatehouse/store/spool"
	"github.com/gatehouse/gatehouse/store/wifi"
)

// sharedNode is a RADIUS server of one node with its spool replaying into
// a shared store.
type sharedNode struct {
	*dynServer
	spool *spool.Spool
	store wifi.Store
}

// startSpool opens a spool with cfg, replaying into store until the test
// ends.
func startSpool(tb testing.TB, cfg spool.Config, store wifi.Store) *spool.Spool {
	tb.Helper()
	sp, err := spool.Open(cfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sp.Run(ctx, store); close(done) }()
	tb.Cleanup(func() { cancel(); <-done; sp.Close() })
	return sp
}

// startSharedNode starts a node named name on store; accounting goes to
// the store.
func startSharedNode(t *testing.T, name string, store wifi.Store, mod func(*Config)) *sharedNode {
	t.Helper()
	return startSharedNodeIn(t, t.TempDir(), name, store, mod)
}

func startSharedNodeIn(t *testing.T, dir, name string, store wifi.Store, mod func(*Config)) *sharedNode {
	t.Helper()
	sp := startSpool(t, spool.Config{Dir: dir, Node: name, RetryMax: 200 * time.Millisecond}, store)
	ds := startDynServerWith(t, func(s *Server) { s.SetShared(wifi.Node{Spool: sp, Store: store}) }, func(c *Config) {
		c.Accounting = AccountingStore
		if mod != nil {
			mod(c)
		}
	})
	return &sharedNode{dynServer: ds, spool: sp, store: store}
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (n *sharedNode) drained(t *testing.T) {
	t.Helper()
	waitUntil(t, "the spool to drain", 20*time.Second, func() bool { return n.spool.Stats().Records == 0 })
}

// pgStore starts PostgreSQL and returns a migrated database's Wi-Fi store.
func pgStore(t testing.TB) (*pgtest.Server, *postgres.WiFi) {
	t.Helper()
	pg := pgtest.Start(t)
	db, err := postgres.Open(postgres.Config{DSN: pg.CreateDatabase("gh_radius"), ConnectTimeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return pg, db.WiFi()
}

// backendStore is fileStore or pgStore's store, by name.
func backendStore(t testing.TB, backend string) wifi.Store {
	if backend == "file" {
		return fileStore(t)
	}
	_, store := pgStore(t)
	return store
}

func fileStore(t testing.TB) wifi.Store {
	s, err := wifi.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The session record radius writes is the one the stores read: kinds and
// column fields agree with package store/wifi, and a record decodes back
// into the session, certificate chain included.
func TestSharedRecordFormat(t *testing.T) {
	if kindAcct != wifi.KindAcct || kindSession != wifi.KindSession || kindSessionEnd != wifi.KindSessionEnd {
		t.Fatal("record kinds differ from store/wifi's")
	}
	p := getPKI(t)
	leaf, err := x509.ParseCertificate(p.alice.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	n := &nas{name: "ap"}
	tok := [16]byte{1, 2, 3}
	info := sessionInfo{nas: n, nasAddr: netip.MustParseAddr("127.0.0.2"), sessionID: "s-1", station: testStation,
		userName: "alice", framedIP: netip.MustParseAddr("10.0.0.7"), chain: []*x509.Certificate{leaf},
		rule: "engineering", wifi: policy.WiFi{Permitted: true, VLAN: "20", SessionTimeout: time.Hour}, accepted: time.Unix(1, 0).UTC()}
	rec := encodeSession(&tok, &info, time.Unix(2, 0))
	var w wifi.Session
	if err := json.Unmarshal(rec, &w); err != nil {
		t.Fatal(err)
	}
	if w.Token != hex.EncodeToString(tok[:]) || w.NAS != "ap" || w.NASAddr != "127.0.0.2" || w.SessionID != "s-1" ||
		w.Station != testStation || w.FramedIP != "10.0.0.7" || !w.Updated.Equal(time.Unix(2, 0)) {
		t.Fatalf("store's view of the record: %+v", w)
	}
	e, err := decodeSession(rec, n, netip.MustParseAddr("127.0.0.3"))
	if err != nil {
		t.Fatal(err)
	}
	if e.token != tok || e.info.nasAddr != netip.MustParseAddr("127.0.0.3") || e.info.rule != "engineering" ||
		e.info.wifi != info.wifi || len(e.info.chain) != 1 || !e.info.chain[0].Equal(leaf) || e.info.userName != "alice" {
		t.Fatalf("decoded session: %+v", e.info)
	}
	if _, err := decodeSession([]byte(`{"token":"00","chain":[]}`), n, netip.Addr{}); err == nil {
		t.Error("a record with a bad token decoded")
	}
}

// TestSharedSessionAcrossNodes: node A accepts the login, the access
// point sends the accounting to node B (it failed over, or balances);
// B finds the session in the shared store, and when the policy changes
// B — the node that knows the NAS's current address — disconnects it.
// Against the file store and PostgreSQL.
func TestSharedSessionAcrossNodes(t *testing.T) {
	for _, backend := range []string{"file", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			store := backendStore(t, backend)
			a := startSharedNode(t, "node-a", store, nil)
			b := startSharedNode(t, "node-b", store, nil)
			reply := a.login(t)
			cls := classes(reply)
			user := rfc2865.UserName_GetString(reply)
			a.drained(t)

			b.acct(t, rfc2866.AcctStatusType_Value_Start, "sess-77", user, cls)
			waitUntil(t, "node B to adopt the session", 10*time.Second, func() bool { _, l := b.WiFiSessions(); return l == 1 })
			if st := b.SharedStats(); st.Adopted != 1 {
				t.Fatalf("node B shared stats %+v", st)
			}
			b.drained(t)
			rows, err := store.Accounting(context.Background(), "sess-77")
			if err != nil || len(rows) != 1 || rows[0].Node != "node-b" || rows[0].Acct.ClassToken == "" {
				t.Fatalf("accounting rows %+v, %v; want the Start from node-b with its Class token", rows, err)
			}

			b.auth.deleteRule("Alice Example")
			b.Revalidate(context.Background())
			r := b.nas.next(t, 2*time.Second)
			if r.pkt.Code != layeh.CodeDisconnectRequest || rfc2866.AcctSessionID_GetString(r.pkt) != "sess-77" ||
				rfc2865.UserName_GetString(r.pkt) != user {
				t.Fatalf("node B sent %v session %q user %q", r.pkt.Code, rfc2866.AcctSessionID_GetString(r.pkt), rfc2865.UserName_GetString(r.pkt))
			}
			waitUntil(t, "node B to forget the session", 2*time.Second, func() bool { _, l := b.WiFiSessions(); return l == 0 })
			// The end reaches the store: no third node would adopt it.
			tok, _ := findTokenIn(cls)
			waitUntil(t, "the end of the session in the store", 10*time.Second, func() bool {
				_, ok, err := store.LookupSession(context.Background(), tok)
				return !ok && err == nil
			})
		})
	}
}

func findTokenIn(cls [][]byte) (string, bool) {
	for _, c := range cls {
		if len(c) == classLen && string(c[:len(classPrefix)]) == classPrefix {
			return string(c[len(classPrefix):]), true
		}
	}
	return "", false
}

// acctNoWait sends an Accounting-Request and reports whether it was
// answered within d.
func acctAnswered(t *testing.T, s *Server, status rfc2866.AcctStatusType, session string, d time.Duration) bool {
	t.Helper()
	p := layeh.New(layeh.CodeAccountingRequest, []byte(testSecret))
	rfc2866.AcctStatusType_Set(p, status)
	rfc2866.AcctSessionID_SetString(p, session)
	rfc2865.UserName_SetString(p, "alice")
	rfc2865.CallingStationID_SetString(p, testStation)
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	conn := dial(t, s.AcctAddr())
	for range 3 { // the NAS retransmits
		if r := rawExchange(t, conn, b, d); r != nil && r[0] == codeAccountingResponse {
			return true
		}
	}
	return false
}

// TestSharedOutage: two nodes, one PostgreSQL, which stops during a login
// load and accounting on both.
// Every login is accepted and every Accounting-Request acknowledged while
// it is down (the spool grows); after it restarts the spool is replayed
// and radius_accounting holds every record exactly once.
func TestSharedOutage(t *testing.T) {
	pg, store := pgStore(t)
	nodes := []*sharedNode{startSharedNode(t, "node-a", store, nil), startSharedNode(t, "node-b", store, nil)}

	const perPhase = 10
	want := map[string]bool{}
	send := func(phase string) {
		for k, n := range nodes {
			for i := range perPhase {
				for _, st := range []rfc2866.AcctStatusType{rfc2866.AcctStatusType_Value_Start, rfc2866.AcctStatusType_Value_Stop} {
					sid := fmt.Sprintf("%s-%d-%d", phase, k, i)
					if !acctAnswered(t, n.Server, st, sid, time.Second) {
						t.Fatalf("%s: accounting %s %v not acknowledged", phase, sid, st)
					}
					want[sid+"/"+st.String()] = true
				}
			}
		}
	}
	var failed, ok int
	var mu sync.Mutex
	logins := func(k int) {
		var wg sync.WaitGroup
		for i := range k {
			n := nodes[i%len(nodes)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := &testServer{Server: n.Server}
				res, err := c.client(testSecret).Authenticate(context.Background(), "anonymous@example.com", n.pki.clientTLS(&n.pki.alice, 0))
				mu.Lock()
				defer mu.Unlock()
				if err != nil || !res.Accepted {
					failed++
				} else {
					ok++
				}
			}()
		}
		wg.Wait()
	}
	drained := func() {
		for _, n := range nodes {
			n.drained(t)
		}
	}
	send("before")
	logins(4)
	drained()

	pg.Stop()
	down := time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); logins(16) }() // the login load during the outage
	send("during")
	wg.Wait()
	for _, n := range nodes {
		if st := n.spool.Stats(); st.Records < 2*perPhase || st.Oldest.IsZero() {
			t.Fatalf("spool during the outage: %+v; want the records kept", st)
		}
		waitUntil(t, "the replayer to notice the outage", 10*time.Second, func() bool { return n.spool.Stats().Failing })
	}
	t.Logf("outage: %d logins accepted, %d failed, %d+%d records spooled in %v", ok, failed,
		nodes[0].spool.Stats().Records, nodes[1].spool.Stats().Records, time.Since(down))

	pg.Restart()
	send("after")
	drained()
	if failed != 0 {
		t.Fatalf("%d logins failed", failed)
	}
	rows, err := store.Accounting(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	got := map[string]int{}
	for _, r := range rows {
		if keys[r.Key] {
			t.Fatalf("idempotency key %s twice", r.Key)
		}
		keys[r.Key] = true
		got[r.Acct.SessionID+"/"+statusType(r.Acct.Status).String()]++
	}
	for k := range want {
		if got[k] != 1 {
			t.Errorf("record %s stored %d times, want once", k, got[k])
		}
	}
	if len(rows) != len(want) {
		t.Errorf("%d rows, want %d", len(rows), len(want))
	}
}

func statusType(s string) rfc2866.AcctStatusType {
	switch s {
	case "start":
		return rfc2866.AcctStatusType_Value_Start
	case "stop":
		return rfc2866.AcctStatusType_Value_Stop
	}
	return 0
}

// TestSharedKill: a node is killed (SIGKILL) with records in its spool
// that PostgreSQL, down, has not taken; at restart the node replays them:
// every acknowledged record is in radius_accounting exactly once.
func TestSharedKill(t *testing.T) {
	if os.Getenv("GATEHOUSE_SPOOL_KILL_HELPER") != "" {
		return
	}
	pg, store := pgStore(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSharedKillHelper$")
	cmd.Env = append(os.Environ(), "GATEHOUSE_SPOOL_KILL_HELPER="+dir+"|"+pg.DSN("gh_radius"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	sc := bufio.NewScanner(out)
	var addr string
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "acct "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatal("the helper did not start")
	}
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	acked := map[string]bool{}
	send := func(sid string) {
		req := acctRequest(t, rfc2866.AcctStatusType_Value_Start, sid)
		for range 5 {
			if r := rawExchange(t, conn, req, time.Second); r != nil {
				acked[sid] = true
				return
			}
		}
		t.Fatalf("accounting %s not acknowledged", sid)
	}
	for i := range 30 {
		send(fmt.Sprint("up-", i))
	}
	pg.Stop()
	for i := range 30 {
		send(fmt.Sprint("down-", i))
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	pg.Restart()

	sp, err := spool.Open(spool.Config{Dir: dir, Node: "node-k"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if st := sp.Stats(); st.Records == 0 {
		t.Fatal("the killed node's spool is empty: the test did not test a replay")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sp.Run(ctx, store); close(done) }()
	waitUntil(t, "the replay after the restart", 20*time.Second, func() bool { return sp.Stats().Records == 0 })
	cancel()
	<-done
	rows, err := store.Accounting(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, r := range rows {
		got[r.Acct.SessionID]++
	}
	for sid := range acked {
		if got[sid] != 1 {
			t.Errorf("acknowledged record %s stored %d times, want once", sid, got[sid])
		}
	}
	for sid, n := range got {
		if n != 1 {
			t.Errorf("record %s stored %d times", sid, n)
		}
	}
}

// TestSharedKillHelper is the node TestSharedKill kills.
func TestSharedKillHelper(t *testing.T) {
	env := os.Getenv("GATEHOUSE_SPOOL_KILL_HELPER")
	if env == "" {
		t.Skip("helper process for TestSharedKill")
	}
	dir, dsn, _ := strings.Cut(env, "|")
	db, err := postgres.Open(postgres.Config{DSN: dsn, ConnectTimeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := startSharedNodeIn(t, dir, "node-k", db.WiFi(), nil)
	fmt.Printf("acct %s\n", n.AcctAddr())
	select {}
}

// accounting = "both" with the file's disk full: the record is in the
// spool, so it is acknowledged (once) and reaches the store; the file
// failure is logged, and a retransmission does not make a second row.
func TestAccountingBothFileFull(t *testing.T) {
	dir := policytest.SmallFS(t, 64<<10)
	file := filepath.Join(dir, "accounting.jsonl")
	store := fileStore(t)
	sp := startSpool(t, spool.Config{Dir: t.TempDir(), Node: "a"}, store)
	s := startServerWith(t, func(s *Server) { s.SetShared(wifi.Node{Spool: sp, Store: store}) }, func(c *Config) {
		c.AccountingFile, c.Accounting = file, AccountingBoth
	})
	policytest.Fill(t, dir, "filler")
	conn := dial(t, s.AcctAddr())
	req := acctRequest(t, rfc2866.AcctStatusType_Value_Start, "full-disk")
	if rawExchange(t, conn, req, time.Second) == nil {
		t.Fatal("not acknowledged although the spool has the record")
	}
	waitUntil(t, "the record in the store", 10*time.Second, func() bool { return sp.Stats().Records == 0 })
	rows, err := store.Accounting(context.Background(), "full-disk")
	if err != nil || len(rows) != 1 {
		t.Fatalf("store rows %d, %v; want 1", len(rows), err)
	}
}

// FuzzDecodeSession: a session record from the store (written by another
// node, or damaged) never panics; what decodes has a token and a chain.
func FuzzDecodeSession(f *testing.F) {
	p := getPKI(f)
	leaf, _ := x509.ParseCertificate(p.alice.Certificate[0])
	tok := [16]byte{9}
	f.Add(encodeSession(&tok, &sessionInfo{nas: &nas{name: "ap"}, chain: []*x509.Certificate{leaf}}, time.Unix(0, 0)))
	f.Add([]byte(`{"token":"00112233445566778899aabbccddeeff","chain":["AAAA"]}`))
	f.Add([]byte(`{"token":"zz","nas_ip":"x","framed_ip":"::1"}`))
	n := &nas{name: "ap"}
	f.Fuzz(func(t *testing.T, rec []byte) {
		e, err := decodeSession(rec, n, netip.MustParseAddr("127.0.0.1"))
		if err == nil && (len(e.info.chain) == 0 || e.info.nas != n) {
			t.Fatalf("decoded without a chain or NAS: %+v", e.info)
		}
	})
}
