package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// memTarget records what it commits, idempotent by key like the real
// tables; fail makes the next Apply calls fail.
type memTarget struct {
	mu      sync.Mutex
	keys    map[string]int // key -> times offered in a committed batch
	order   []uint64
	batches []int
	fail    int
}

func (m *memTarget) Apply(ctx context.Context, node string, es []Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail > 0 {
		m.fail--
		return errors.New("database down")
	}
	if m.keys == nil {
		m.keys = map[string]int{}
	}
	m.batches = append(m.batches, len(es))
	for _, e := range es {
		k := Key(node, e.Seq)
		if m.keys[k] == 0 {
			m.order = append(m.order, e.Seq)
		}
		m.keys[k]++
	}
	return nil
}

func (m *memTarget) snapshot() (order []uint64, dups int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range m.keys {
		dups += n - 1
	}
	return append([]uint64(nil), m.order...), dups
}

func open(t *testing.T, dir string, cfg Config) *Spool {
	t.Helper()
	cfg.Dir, cfg.Node = dir, "a"
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 50 * time.Millisecond
	}
	s, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run replays until the spool is empty, then stops the replayer.
func run(t *testing.T, s *Spool, tg Target) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx, tg); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Records > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if n := s.Stats().Records; n != 0 {
		t.Fatalf("%d records not replayed", n)
	}
}

func appendN(t *testing.T, s *Spool, from, n int) {
	t.Helper()
	for i := range n {
		if err := s.Append("acct", []byte(fmt.Sprintf(`{"n":%d}`, from+i))); err != nil {
			t.Fatal(err)
		}
	}
}

func wantOrder(t *testing.T, got []uint64, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("replayed %d entries, want %d", len(got), n)
	}
	for i, s := range got {
		if s != uint64(i+1) {
			t.Fatalf("entry %d has seq %d: out of order", i, s)
		}
	}
}

func TestReplayInOrderInBatches(t *testing.T) {
	s := open(t, t.TempDir(), Config{BatchMax: 100, SegmentBytes: 4096})
	defer s.Close()
	appendN(t, s, 0, 1000)
	if st := s.Stats(); st.Records != 1000 || st.Oldest.IsZero() {
		t.Fatalf("stats before replay = %+v", st)
	}
	tg := &memTarget{}
	run(t, s, tg)
	order, dups := tg.snapshot()
	wantOrder(t, order, 1000)
	if dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
	for _, b := range tg.batches {
		if b > 100 {
			t.Fatalf("batch of %d > BatchMax", b)
		}
	}
	// Replayed segments are deleted; the current one stays.
	segs, _ := s.segments()
	if len(segs) != 1 {
		t.Fatalf("segments left after replay: %v", segs)
	}
	if st := s.Stats(); !st.Oldest.IsZero() || st.Replayed != 1000 {
		t.Fatalf("stats after replay = %+v", st)
	}
}

// An outage of the target: records stay, the replayer retries the same
// batch, and everything arrives once, in order.
func TestOutageRetried(t *testing.T) {
	s := open(t, t.TempDir(), Config{BatchMax: 10})
	defer s.Close()
	tg := &memTarget{fail: 5}
	appendN(t, s, 0, 50)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx, tg); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	sawFailing := false
	for s.Stats().Records > 0 && time.Now().Before(deadline) {
		sawFailing = sawFailing || s.Stats().Failing
		appendN(t, s, 0, 0)
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	<-done
	if !sawFailing {
		t.Error("Stats never reported the failing target")
	}
	order, dups := tg.snapshot()
	wantOrder(t, order, 50)
	if dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
	if st := s.Stats(); st.Failing || st.LastError != "" {
		t.Fatalf("stats after recovery = %+v", st)
	}
}

// A restart (or kill -9) keeps what was not replayed and the sequence
// numbers: no loss, no reuse of a key.
func TestReopenResumes(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Config{})
	appendN(t, s, 0, 30)
	tg := &memTarget{}
	run(t, s, tg)
	appendN(t, s, 30, 20) // not replayed before the "crash"
	s.Close()

	s = open(t, dir, Config{})
	defer s.Close()
	if st := s.Stats(); st.Records != 20 {
		t.Fatalf("after reopen %d records pending, want 20", st.Records)
	}
	appendN(t, s, 50, 10)
	run(t, s, tg)
	order, dups := tg.snapshot()
	wantOrder(t, order, 60)
	if dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
}

// The cursor write is lost after a commit (crash between the two): the
// batch is offered again under the same keys, which the target ignores.
func TestLostCursorReplaysSameKeys(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Config{})
	appendN(t, s, 0, 10)
	tg := &memTarget{}
	run(t, s, tg)
	s.Close()
	if err := os.Remove(filepath.Join(dir, "cursor.json")); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Config{})
	defer s.Close()
	appendN(t, s, 10, 5)
	run(t, s, tg)
	order, dups := tg.snapshot()
	wantOrder(t, order, 15) // the keys of the first ten came again
	if dups != 10 {
		t.Fatalf("%d entries offered twice, want the 10 of the lost cursor", dups)
	}
}

// A crash in the middle of a write leaves a partial line: it was never
// acknowledged, Open cuts it and appending goes on.
func TestPartialLineCut(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Config{})
	appendN(t, s, 0, 3)
	s.Close()
	f, err := os.OpenFile(filepath.Join(dir, segName(1)), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":4,"kind":"acct","da`)
	f.Close()
	s = open(t, dir, Config{})
	defer s.Close()
	appendN(t, s, 3, 1)
	tg := &memTarget{}
	run(t, s, tg)
	order, _ := tg.snapshot()
	wantOrder(t, order, 4)
}

func TestOpenValidates(t *testing.T) {
	if _, err := Open(Config{Dir: t.TempDir()}, nil); err == nil {
		t.Error("no node: no error")
	}
}

// A record is one line of JSON: one with a newline would split the entry.
func TestAppendRejectsMultiline(t *testing.T) {
	s := open(t, t.TempDir(), Config{})
	defer s.Close()
	if err := s.Append("acct", []byte("{\"a\":\n1}")); err == nil {
		t.Fatal("a record with a newline was spooled")
	}
	if st := s.Stats(); st.Records != 0 {
		t.Fatalf("stats after a refused append: %+v", st)
	}
}

// FuzzOpenReplay: whatever a crash or damage left in a segment, Open and
// the replayer never panic, and a record appended afterwards is replayed.
func FuzzOpenReplay(f *testing.F) {
	f.Add([]byte(`{"seq":1,"kind":"acct","t":"2026-12-01T00:00:00Z","data":{}}` + "\n"))
	f.Add([]byte(`{"seq":1,"kind":"acct","da`))
	f.Add([]byte("garbage\n{\"seq\":99}\n"))
	f.Fuzz(func(t *testing.T, seg []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(Config{Dir: dir, Node: "a", RetryMax: time.Millisecond}, nil)
		if err != nil {
			return // an unreadable spool is an error, not a panic
		}
		defer s.Close()
		if err := s.Append("acct", []byte(`{"last":true}`)); err != nil {
			t.Fatal(err)
		}
		tg := &memTarget{}
		run(t, s, tg)
		order, _ := tg.snapshot()
		if len(order) == 0 {
			t.Fatal("the appended record was not replayed")
		}
	})
}
