package pgstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/vpn"
	"github.com/gatehouse/gatehouse/vpn/vpntest"
)

// target records what the store applies to it.
type target struct {
	mu      sync.Mutex
	applied map[string]int // fingerprint: times applied
	forgot  map[string]int
	syncs   int
	peers   int // records of the last Sync
}

func newTarget() *target { return &target{applied: map[string]int{}, forgot: map[string]int{}} }

func (t *target) Apply(p *vpn.PeerRecord, asOf time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.applied[p.Fingerprint]++
}

func (t *target) Forget(fp string, asOf time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forgot[fp]++
}

func (t *target) Sync(recs []*vpn.PeerRecord, asOf time.Time) (int, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.syncs++
	t.peers = len(recs)
	return 0, 0
}

func (t *target) TriggerRevalidate() {}

func (t *target) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.applied, t.forgot = map[string]int{}, map[string]int{}
}

func (t *target) get(fp string) (applied, forgot int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.applied[fp], t.forgot[fp]
}

func tctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// The classic trap of a change sequence: transaction A writes peer 1 (it
// takes its revision first) but commits after transaction B has written
// peer 2 and committed, and after a node has read B's change. The next
// incremental read must still see A's change.
func TestIncrementalResyncSeesLateCommit(t *testing.T) {
	pg := pgtest.Start(t)
	open := newDB(t, pg)
	st := New(open(), Config{Site: "hq", Node: "a"}, nil)
	other := New(open(), Config{Site: "hq", Node: "b"}, nil)
	for i := 1; i <= 2; i++ {
		if err := other.Save(vpntest.Record(t, i, "100.96.0."+string(rune('1'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	tg := newTarget()
	cursor, err := st.resync(tctx(t), tg)
	if err != nil || tg.peers != 2 {
		t.Fatalf("full resync: %d peers, %v", tg.peers, err)
	}
	// A: takes its revision now, commits last.
	a, err := pgx.Connect(tctx(t), pg.DSN(dbName(t, other)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	txA, err := a.Begin(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := txA.Exec(tctx(t), "UPDATE vpn_peers SET node = 'A' WHERE fingerprint = $1", vpntest.FP(1)); err != nil {
		t.Fatal(err)
	}
	// B: a later revision, committed first.
	if _, err := other.db.Pool().Exec(tctx(t), "UPDATE vpn_peers SET node = 'B' WHERE fingerprint = $1", vpntest.FP(2)); err != nil {
		t.Fatal(err)
	}
	var revA, revB int64
	if err := txA.QueryRow(tctx(t), "SELECT rev FROM vpn_peers WHERE fingerprint = $1", vpntest.FP(1)).Scan(&revA); err != nil {
		t.Fatal(err)
	}
	if err := other.db.Pool().QueryRow(tctx(t), "SELECT rev FROM vpn_peers WHERE fingerprint = $1", vpntest.FP(2)).Scan(&revB); err != nil {
		t.Fatal(err)
	}
	if revA >= revB {
		t.Fatalf("revisions: A %d, B %d: the test needs A's to be the older", revA, revB)
	}
	tg.reset()
	if cursor, err = st.resyncSince(tctx(t), tg, cursor); err != nil {
		t.Fatal(err)
	}
	if n, _ := tg.get(vpntest.FP(2)); n != 1 {
		t.Fatalf("B's committed change applied %d times, want 1", n)
	}
	if n, _ := tg.get(vpntest.FP(1)); n != 0 {
		t.Fatal("A's uncommitted change applied")
	}
	if err := txA.Commit(tctx(t)); err != nil {
		t.Fatal(err)
	}
	tg.reset()
	if cursor, err = st.resyncSince(tctx(t), tg, cursor); err != nil {
		t.Fatal(err)
	}
	if n, _ := tg.get(vpntest.FP(1)); n != 1 {
		t.Fatalf("A's change, committed after B's was read, applied %d times, want 1 (skipped)", n)
	}
	// Quiet now: a read after one that saw everything reads nothing.
	if cursor, err = st.resyncSince(tctx(t), tg, cursor); err != nil {
		t.Fatal(err)
	}
	tg.reset()
	if _, err = st.resyncSince(tctx(t), tg, cursor); err != nil {
		t.Fatal(err)
	}
	if len(tg.applied)+len(tg.forgot) != 0 {
		t.Fatalf("a quiet registry read again: %v %v", tg.applied, tg.forgot)
	}
}

// dbName is the database of st's pool.
func dbName(t *testing.T, st *Store) string {
	return st.db.Pool().Config().ConnConfig.Database
}

// Deletions and quarantines made by another node are seen by the
// incremental read (tombstones), and a delete followed by a re-enrollment
// of the same certificate ends with the peer present.
func TestIncrementalResyncSeesDeletions(t *testing.T) {
	pg := pgtest.Start(t)
	open := newDB(t, pg)
	st := New(open(), Config{Site: "hq", Node: "a"}, nil)
	other := New(open(), Config{Site: "hq", Node: "b"}, nil)
	branch := New(open(), Config{Site: "branch", Node: "b"}, nil)
	for i := 1; i <= 3; i++ {
		if err := other.Save(vpntest.Record(t, i, "100.96.0."+string(rune('1'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	tg := newTarget()
	cursor, err := st.resync(tctx(t), tg)
	if err != nil {
		t.Fatal(err)
	}
	tg.reset()
	if err := other.Remove(vpntest.FP(1)); err != nil {
		t.Fatal(err)
	}
	if err := other.Quarantine(vpntest.FP(2), "test"); err != nil {
		t.Fatal(err)
	}
	r3 := vpntest.Record(t, 3, "100.96.0.4")
	if err := other.Remove(r3.Fingerprint); err != nil {
		t.Fatal(err)
	}
	if err := other.Save(r3); err != nil {
		t.Fatal(err)
	}
	// Another site's deletion is not ours.
	if err := branch.Save(vpntest.Record(t, 9, "100.96.0.9")); err != nil {
		t.Fatal(err)
	}
	if err := branch.Remove(vpntest.FP(9)); err != nil {
		t.Fatal(err)
	}
	if _, err = st.resyncSince(tctx(t), tg, cursor); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		fp              string
		applied, forgot int
	}{{vpntest.FP(1), 0, 1}, {vpntest.FP(2), 0, 1}, {vpntest.FP(3), 1, 0}, {vpntest.FP(9), 0, 0}} {
		if a, f := tg.get(c.fp); a != c.applied || f != c.forgot {
			t.Errorf("%s…: applied %d, forgotten %d; want %d, %d", c.fp[60:], a, f, c.applied, c.forgot)
		}
	}
}

// Run catches a change whose notification was missed with an incremental
// read, not a full one; the lease holder purges old tombstones, and only
// old ones.
func TestRunResyncsIncrementally(t *testing.T) {
	pg := pgtest.Start(t)
	open := newDB(t, pg)
	st := New(open(), Config{Site: "hq", Node: "a", ResyncEvery: 50 * time.Millisecond, TombstoneRetention: time.Hour}, nil)
	other := New(open(), Config{Site: "hq", Node: "b"}, nil)
	if err := other.Save(vpntest.Record(t, 1, "100.96.0.2")); err != nil {
		t.Fatal(err)
	}
	tg := newTarget()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx, tg) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the first full resync", func() bool { tg.mu.Lock(); defer tg.mu.Unlock(); return tg.syncs == 1 })
	// A write without pg_notify: only a resync can find it.
	if _, err := other.db.Pool().Exec(tctx(t), "UPDATE vpn_peers SET node = 'x' WHERE fingerprint = $1", vpntest.FP(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the silent change applied", func() bool { n, _ := tg.get(vpntest.FP(1)); return n > 0 })
	if _, err := other.db.Pool().Exec(tctx(t), "DELETE FROM vpn_peers WHERE fingerprint = $1", vpntest.FP(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the silent deletion applied", func() bool { _, n := tg.get(vpntest.FP(1)); return n > 0 })
	tg.mu.Lock()
	syncs := tg.syncs
	tg.mu.Unlock()
	if syncs != 1 {
		t.Fatalf("%d full resyncs, want only the first", syncs)
	}
	// Tombstones: one old, one recent; a purge keeps the recent one.
	if _, err := other.db.Pool().Exec(tctx(t), "UPDATE vpn_peer_deletions SET deleted_at = now() - interval '2 hours'"); err != nil {
		t.Fatal(err)
	}
	if err := other.Save(vpntest.Record(t, 2, "100.96.0.3")); err != nil {
		t.Fatal(err)
	}
	if err := other.Remove(vpntest.FP(2)); err != nil {
		t.Fatal(err)
	}
	if err := st.purgeTombstones(tctx(t)); err != nil {
		t.Fatal(err)
	}
	var fps []string
	rows, _ := other.db.Pool().Query(tctx(t), "SELECT fingerprint FROM vpn_peer_deletions")
	fps, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(fps) != 1 || fps[0] != vpntest.FP(2) {
		t.Fatalf("tombstones after purge: %v, %v; want only the recent one", fps, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
