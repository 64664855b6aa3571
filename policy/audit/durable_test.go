package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy/jsonl"
	"github.com/gatehouse/gatehouse/policy/policytest"
)

// waitStats polls the writer's counters until ok or a deadline.
func waitStats(t *testing.T, w *Writer, ok func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := w.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out; stats %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readTrail returns the NAS field of every line of file, failing the test
// on a line that does not parse.
func readTrail(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("the trail ends in a partial line: %q", b[max(0, len(b)-80):])
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l struct{ NAS string }
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line does not parse: %v: %q", err, sc.Text())
		}
		out = append(out, l.NAS)
	}
	return out
}

// TestDiskFull fills a real (tmpfs) file system under the writer: the
// events that do not fit are dropped and counted, no line is cut, and the
// trail resumes by itself when space is freed, without a reopen.
func TestDiskFull(t *testing.T) {
	dir := policytest.SmallFS(t, 64<<10)
	file := filepath.Join(dir, "audit.jsonl")
	var logs policytest.SyncBuffer
	w, err := New(Config{File: file, Queue: 1000, FlushEvery: 10 * time.Millisecond}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, w)
	ev := event()
	// Long lines, so that a write into the last free bytes is cut short.
	ev.Decision.Reason = strings.Repeat("r", 1500)
	audit := func(phase string, n int) {
		for i := range n {
			e := ev
			e.NAS = fmt.Sprintf("%s-%d", phase, i)
			w.Audit(e)
		}
	}
	audit("a", 10)
	waitStats(t, w, func(s Stats) bool { return s.Written == 10 })

	filler := policytest.Fill(t, dir, "filler")
	audit("b", 10)
	full := waitStats(t, w, func(s Stats) bool { return s.Written+s.Dropped == 20 && s.Queued == 0 })
	if full.Dropped == 0 || full.Errors == 0 {
		t.Fatalf("disk full: stats %+v, want drops and errors", full)
	}
	if got := readTrail(t, file); len(got) != int(full.Written) {
		t.Fatalf("%d lines in the file, %d counted written", len(got), full.Written)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	audit("c", 10)
	waitStats(t, w, func(s Stats) bool { return s.Written == full.Written+10 })
	stop()

	st := w.Stats()
	got := readTrail(t, file)
	if len(got) != int(st.Written) || st.Written+st.Dropped != 30 {
		t.Fatalf("%d lines; stats %+v; want written+dropped = 30 = lines+dropped", len(got), st)
	}
	seen := map[string]bool{}
	for _, n := range got {
		if seen[n] {
			t.Fatalf("event %s written twice", n)
		}
		seen[n] = true
	}
	for i := range 10 {
		if !seen[fmt.Sprintf("a-%d", i)] || !seen[fmt.Sprintf("c-%d", i)] {
			t.Fatalf("lines %v: an event written before or after the full disk is missing", got)
		}
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "writing again") {
		t.Errorf("logs:\n%s", logs.String())
	}
}

// failingWriter fails every Write while fail is set.
type failingWriter struct {
	mu   sync.Mutex
	fail bool
	buf  bytes.Buffer
}

func (f *failingWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return 0, errors.New("broken pipe")
	}
	return f.buf.Write(p)
}

func (f *failingWriter) set(fail bool) {
	f.mu.Lock()
	f.fail = fail
	f.mu.Unlock()
}

// TestOutputErrorsCounted: events that a failing output did not take are
// dropped and counted, and the writer goes on.
func TestOutputErrorsCounted(t *testing.T) {
	out := &failingWriter{fail: true}
	w, err := New(Config{Output: out, FlushEvery: 5 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, w)
	for range 3 {
		w.Audit(event())
	}
	waitStats(t, w, func(s Stats) bool { return s.Dropped == 3 && s.Errors > 0 })
	out.set(false)
	for range 2 {
		w.Audit(event())
	}
	waitStats(t, w, func(s Stats) bool { return s.Written == 2 })
	stop()
	if st := w.Stats(); st.Dropped != 3 || st.Written != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestOpenCutsPartialLine: a trail left by a crash in the middle of a line
// is repaired when the writer starts; every line parses and new lines are
// whole.
func TestOpenCutsPartialLine(t *testing.T) {
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	ev := event()
	ev.NAS = "before"
	whole, _ := AppendJSON(nil, &ev)
	if err := os.WriteFile(file, append(whole, whole[:40]...), 0o640); err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{File: file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, w)
	ev.NAS = "after"
	w.Audit(ev)
	stop()
	if got := readTrail(t, file); len(got) != 2 || got[0] != "before" || got[1] != "after" {
		t.Fatalf("lines %v", got)
	}
	if q, err := os.ReadFile(file + ".partial"); err != nil || string(q) != string(whole[:40])+"\n" {
		t.Fatalf("partial line not kept: %q %v", q, err)
	}
}

// flakyFile is a real file whose Sync fails while failSync is set.
type flakyFile struct {
	*os.File
	mu       sync.Mutex
	failSync bool
}

func (f *flakyFile) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failSync {
		return syscall.EIO
	}
	return f.File.Sync()
}

func (f *flakyFile) set(fail bool) {
	f.mu.Lock()
	f.failSync = fail
	f.mu.Unlock()
}

// TestSyncErrorDropsUnsynced injects fsync failures (EIO, which a tmpfs
// cannot produce): the events written since the last good sync are removed
// from the file and counted as dropped; later events are written.
func TestSyncErrorDropsUnsynced(t *testing.T) {
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	var ff *flakyFile
	w, err := New(Config{File: file, FlushEvery: 5 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.openFile = func(path string, perm os.FileMode) (*jsonl.Appender, error) {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, perm)
		if err != nil {
			return nil, err
		}
		ff = &flakyFile{File: f}
		return jsonl.New(ff, path)
	}
	stop := run(t, w)
	audit := func(phase string, n int) {
		for i := range n {
			e := event()
			e.NAS = fmt.Sprintf("%s-%d", phase, i)
			w.Audit(e)
		}
	}
	audit("a", 3)
	waitStats(t, w, func(s Stats) bool { return s.Written == 3 })
	ff.set(true)
	audit("b", 4)
	waitStats(t, w, func(s Stats) bool { return s.Dropped == 4 && s.Errors > 0 })
	if got := readTrail(t, file); len(got) != 3 {
		t.Fatalf("lines %v: unsynced events left in the file after a failed fsync", got)
	}
	ff.set(false)
	audit("c", 2)
	waitStats(t, w, func(s Stats) bool { return s.Written == 5 })
	stop()
	got := readTrail(t, file)
	if strings.Join(got, ",") != "a-0,a-1,a-2,c-0,c-1" {
		t.Fatalf("lines %v", got)
	}
}
