package jsonl

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// faultyFile wraps a real file and fails on demand: the next write stores
// only partial bytes and returns ENOSPC, a sync returns EIO, a truncate
// fails.
type faultyFile struct {
	*os.File
	partial      int // >= 0: the next WriteAt stores this many bytes and fails
	failSync     bool
	failTruncate bool
}

func (f *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if f.partial >= 0 {
		n, _ := f.File.WriteAt(p[:min(f.partial, len(p))], off)
		f.partial = -1
		return n, syscall.ENOSPC
	}
	return f.File.WriteAt(p, off)
}

func (f *faultyFile) Sync() error {
	if f.failSync {
		f.failSync = false
		return syscall.EIO
	}
	return f.File.Sync()
}

func (f *faultyFile) Truncate(n int64) error {
	if f.failTruncate {
		f.failTruncate = false
		return syscall.EIO
	}
	return f.File.Truncate(n)
}

func openFaulty(t *testing.T, path string) (*Appender, *faultyFile) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	ff := &faultyFile{File: f, partial: -1}
	a, err := New(ff, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, ff
}

// lines returns the file's lines, failing the test on a line that is not
// JSON or a file that does not end in a newline.
func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("file ends without a newline: %q", b)
	}
	var out []string
	for l := range bytes.Lines(b) {
		var v map[string]any
		if err := json.Unmarshal(l, &v); err != nil {
			t.Fatalf("line %q does not parse: %v", l, err)
		}
		out = append(out, v["n"].(string))
	}
	return out
}

func line(n string) []byte { return []byte(`{"n":"` + n + `"}` + "\n") }

func equal(t *testing.T, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("lines %q, want %q", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("lines %q, want %q", got, want)
		}
	}
}

func TestPartialWriteRolledBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.jsonl")
	a, ff := openFaulty(t, path)
	if err := a.Append(line("1")); err != nil {
		t.Fatal(err)
	}
	ff.partial = 5
	err := a.Append(append(line("2"), line("3")...))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("err %v, want ENOSPC", err)
	}
	equal(t, lines(t, path), "1")
	// The next write retries: space is back.
	if err := a.Append(line("4")); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	equal(t, lines(t, path), "1", "4")
}

func TestSyncErrorRollsBackToLastSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.jsonl")
	a, ff := openFaulty(t, path)
	a.Append(line("1"))
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	a.Append(line("2"))
	a.Append(line("3"))
	ff.failSync = true
	if err := a.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("err %v, want EIO", err)
	}
	if a.Unsynced() != 0 {
		t.Fatalf("unsynced %d after a failed sync", a.Unsynced())
	}
	equal(t, lines(t, path), "1")
	a.Append(line("4"))
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	equal(t, lines(t, path), "1", "4")
}

func TestFailedTruncateRetriedBeforeNextWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.jsonl")
	a, ff := openFaulty(t, path)
	a.Append(line("1"))
	ff.partial, ff.failTruncate = 7, true
	if err := a.Append(line("2")); err == nil {
		t.Fatal("no error")
	}
	// The partial bytes are still there; the next write removes them first.
	if b, _ := os.ReadFile(path); len(b) == len(line("1")) {
		t.Fatal("fault injection did not leave a partial line")
	}
	if err := a.Append(line("3")); err != nil {
		t.Fatal(err)
	}
	equal(t, lines(t, path), "1", "3")
}

func TestOpenCutsPartialLine(t *testing.T) {
	for _, tc := range []struct {
		name, content, kept string
		cut                 int64
	}{
		{"empty", "", "", 0},
		{"whole", `{"n":"1"}` + "\n", `{"n":"1"}` + "\n", 0},
		{"partial", `{"n":"1"}` + "\n" + `{"n":"2","x`, `{"n":"1"}` + "\n", 11},
		{"only partial", `{"n":"1`, "", 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.jsonl")
			os.WriteFile(path, []byte(tc.content), 0o640)
			a, err := Open(path, 0o640)
			if err != nil {
				t.Fatal(err)
			}
			if a.Cut() != tc.cut {
				t.Errorf("cut %d, want %d", a.Cut(), tc.cut)
			}
			if b, _ := os.ReadFile(path); string(b) != tc.kept {
				t.Errorf("file %q, want %q", b, tc.kept)
			}
			q, qerr := os.ReadFile(path + ".partial")
			if tc.cut > 0 && string(q) != tc.content[len(tc.kept):]+"\n" {
				t.Errorf("quarantined %q", q)
			} else if tc.cut == 0 && qerr == nil {
				t.Error("a .partial file for a whole file")
			}
			if err := a.Append(line("new")); err != nil {
				t.Fatal(err)
			}
			a.Close()
			got := lines(t, path)
			if got[len(got)-1] != "new" {
				t.Errorf("lines %q", got)
			}
		})
	}
}

func TestAppendRejectsPartialLines(t *testing.T) {
	a, _ := openFaulty(t, filepath.Join(t.TempDir(), "x.jsonl"))
	if err := a.Append([]byte(`{"n":"1"}`)); err != ErrNotLines {
		t.Fatalf("err %v", err)
	}
}

// FuzzOpen: whatever a crash left, after Open the file is its old content
// up to the last newline, and a new line lands on a line of its own.
func FuzzOpen(f *testing.F) {
	f.Add([]byte("a\nb"))
	f.Add([]byte("\n"))
	f.Add(bytes.Repeat([]byte("x"), 9000))
	f.Add(append(bytes.Repeat([]byte("y\n"), 3000), 'z'))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content []byte) {
		path := filepath.Join(dir, "f.jsonl")
		os.Remove(path + ".partial")
		if err := os.WriteFile(path, content, 0o640); err != nil {
			t.Fatal(err)
		}
		a, err := Open(path, 0o640)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Append([]byte("new\n")); err != nil {
			t.Fatal(err)
		}
		a.Close()
		got, _ := os.ReadFile(path)
		keep := content[:bytes.LastIndexByte(content, '\n')+1]
		if string(got) != string(keep)+"new\n" {
			t.Fatalf("got %q from %q", got, content)
		}
	})
}

// TestOpenCutsEvenWithoutCopy: when the partial tail cannot be copied (the
// ".partial" path is unusable; a full disk does the same), the file still
// opens, repaired, and says why no copy was kept.
func TestOpenCutsEvenWithoutCopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.jsonl")
	os.WriteFile(path, []byte(`{"n":"1"}`+"\n"+`{"n":`), 0o640)
	os.Mkdir(path+".partial", 0o700) // a directory: cannot be opened for writing
	a, err := Open(path, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if a.Cut() != 5 || a.QuarantineErr() == nil {
		t.Fatalf("cut %d, quarantine error %v", a.Cut(), a.QuarantineErr())
	}
	a.Append(line("2"))
	a.Close()
	equal(t, lines(t, path), "1", "2")
}
