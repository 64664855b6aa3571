package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/policytest"
)

// shippedCopy copies the shipped config.toml, byte for byte, into a temp
// dir where its relative paths resolve (testdata is a symlink) and returns
// the copy's path and content.
func shippedCopy(t testing.TB) (string, []byte) {
	t.Helper()
	b, err := os.ReadFile("../../config.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root, _ := filepath.Abs("../..")
	if err := os.Symlink(filepath.Join(root, "testdata"), filepath.Join(dir, "testdata")); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f, b
}

// testReloader returns a reloader of f, with the file loaded and in force,
// driven by calling attempt directly (no settle wait), logging into logs.
func testReloader(t testing.TB, f string, logs *policytest.SyncBuffer) (*reloader, *policy.Authorizer) {
	t.Helper()
	l, err := loadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	a := policy.NewAuthorizer(l.policy, nil, nil)
	var h slog.Handler = slog.DiscardHandler
	if logs != nil {
		h = slog.NewTextHandler(logs, nil)
	}
	r := newReloader(l, a, slog.New(h))
	r.settle = 0
	return r, a
}

// TestEveryPrefixRefused is the property of issue 10: every strict prefix
// of the shipped config.toml, saved over the file in force, either fails to
// load or is refused at reload; the policy in force stays. The only prefix
// that may load is the file without its final newline, which is the same
// file. It also counts how many prefixes loadConfig accepts.
func TestEveryPrefixRefused(t *testing.T) {
	f, full := shippedCopy(t)
	r, a := testReloader(t, f, nil)
	orig := a.Policy()
	wantRules := strings.Join(orig.Summary().Rules, ",")
	ctx := context.Background()
	loads, swapped := 0, 0
	for n := range len(full) {
		writeFile(t, f, full[:n])
		if _, err := loadConfigBytes(f, full[:n]); err == nil {
			loads++
		}
		r.attempt(ctx)
		if p := a.Policy(); p != orig {
			if strings.TrimRight(string(full[n:]), "\n") != "" {
				t.Fatalf("prefix of %d bytes (of %d) was loaded at reload: rules %v\n…%s", n, len(full), p.Summary().Rules, full[max(0, n-200):n])
			}
			if got := strings.Join(p.Summary().Rules, ","); got != wantRules {
				t.Fatalf("prefix of %d bytes: rules %s, want %s", n, got, wantRules)
			}
			swapped++
			orig = p
		}
	}
	t.Logf("%d prefixes of config.toml: %d load, %d swapped in at reload (the file minus its final newline)", len(full), loads, swapped)
	if loads > 1 {
		t.Errorf("%d prefixes load; want at most 1", loads)
	}
}

// TestZeroRules: a file without rules is refused unless it says deny_all
// = true; deny_all with rules is an error; a deny_all file loads at start
// and denies everyone.
func TestZeroRules(t *testing.T) {
	noRules := func(s string) string { return s[:strings.Index(s, "\n[[policy]]\n")+1] + "[end]\n" }
	denyAll := func(s string) string { return "deny_all = true\n" + noRules(s) }
	for _, tt := range []struct {
		name string
		edit func(string) string
		want string // "" = loads
	}{
		{"no rules", noRules, "refusing to load a policy with no rules (truncated file?)"},
		{"deny_all", denyAll, ""},
		{"deny_all false", func(s string) string { return "deny_all = false\n" + noRules(s) }, "refusing to load a policy with no rules"},
		{"deny_all and rules", func(s string) string { return "deny_all = true\n" + s }, "deny_all: true, but the file has 3 [[policy]] rules"},
		{"no end", func(s string) string { return strings.TrimSuffix(s, "[end]\n") }, "the file does not end with [end]"},
		{"end not last", func(s string) string {
			return strings.Replace(strings.TrimSuffix(s, "[end]\n"), "\n[[policy]]\n", "\n[end]\n[[policy]]\n", 1)
		}, "the file does not end with [end]"},
		{"key in end", func(s string) string { return s + "x = 1\n" }, "the file does not end with [end]"},
		{"end in an open string", func(s string) string { return strings.TrimSuffix(s, "[end]\n") + "x = \"\"\"\n[end]\n" }, "unexpected EOF"},
		{"end twice", func(s string) string { return s + "\n# the end  \n\n  [ end ]  # really\n\n" }, "already been defined"},
		{"blank and comments after end", func(s string) string { return s + "\n# the end\n\n" }, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := writeConfigRaw(t, tt.edit)
			l, err := loadConfig(f)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want == "":
				if n := len(l.policy.Summary().Rules); n != 0 && !strings.Contains(tt.name, "after end") {
					t.Fatalf("%d rules", n)
				}
				var out, errb bytes.Buffer
				if code := run(context.Background(), []string{"check", "-config", f}, &out, &errb); code != exitOK ||
					(l.cfg.DenyAll && !strings.Contains(out.String(), "rules:         none: deny_all = true, everyone is denied")) {
					t.Fatalf("check: exit %d\n%s%s", code, out.String(), errb.String())
				}
			case err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), f+":"):
				t.Fatalf("err = %v; want %q, naming the file", err, tt.want)
			}
		})
	}
}

// TestReloadRefusesNoRules: at reload, a file cut before its rules but
// ending with [end] (as a template gone wrong would) is refused with an
// ERROR and the policy in force stays.
func TestReloadRefusesNoRules(t *testing.T) {
	f, full := shippedCopy(t)
	logs := &policytest.SyncBuffer{}
	r, a := testReloader(t, f, logs)
	orig := a.Policy()
	s := string(full)
	writeFile(t, f, []byte(s[:strings.Index(s, "\n[[policy]]\n")+1]+"[end]\n"))
	r.attempt(context.Background())
	if a.Policy() != orig {
		t.Fatal("a file without rules was swapped in")
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "refusing to load a policy with no rules (truncated file?)") {
		t.Fatalf("logs:\n%s", logs)
	}
}

// TestReloadReadOnce: the file is read once per reload and what was
// compiled is what is recorded as seen. Here the complete file replaces a
// shorter (but valid) one while the reloader reads: the complete one must
// end up in force. (Before, the "already loaded" fingerprint came from a
// second read, which could record the complete file while the short one
// was in force; it was then never loaded.)
func TestReloadReadOnce(t *testing.T) {
	f, full := shippedCopy(t)
	r, a := testReloader(t, f, nil)
	short := strings.Replace(string(full), `name = "sales"`, `name = "sales-old"`, 1)
	writeFile(t, f, []byte(short))
	r.attempt(context.Background())
	if got := a.Policy().Summary().Rules; got[2] != "sales-old" {
		t.Fatalf("setup: %v", got)
	}
	good := strings.Replace(string(full), `name = "sales"`, `name = "sales-new"`, 1)
	// The writer finishes while the reloader reads: the reloader gets the
	// old bytes, the file on disk is then the good one.
	r.readFile = func(name string) ([]byte, error) {
		b, err := os.ReadFile(name)
		writeFile(t, f, []byte(good))
		r.readFile = os.ReadFile
		return b, err
	}
	time.Sleep(10 * time.Millisecond) // a distinct mtime for the writes above
	writeFile(t, f, []byte(strings.Replace(short, "sales-old", "sales-mid", 1)))
	for range 3 {
		r.attempt(context.Background())
	}
	if got := a.Policy().Summary().Rules; got[2] != "sales-new" {
		t.Fatalf("after the writer finished: rules %v; want the good file (sales-new) in force", got)
	}
	// The writer finishes while the short file is compiled and swapped in.
	time.Sleep(10 * time.Millisecond)
	writeFile(t, f, []byte(short))
	good = strings.Replace(string(full), `name = "sales"`, `name = "sales-last"`, 1)
	r.beforeSwap = func(*loaded) {
		writeFile(t, f, []byte(good))
		// An old mtime: only the bytes compiled can tell it is new.
		old := time.Now().Add(-time.Hour)
		os.Chtimes(f, old, old)
		r.beforeSwap = nil
	}
	for range 3 {
		r.attempt(context.Background())
	}
	if got := a.Policy().Summary().Rules; got[2] != "sales-last" {
		t.Fatalf("after the writer finished during the swap: rules %v; want the good file (sales-last) in force", got)
	}
}

// TestReloadSettles: a file written slowly in place is not read before it
// has stayed unchanged for the settle interval; no partial content is
// compiled, and the complete file is loaded.
func TestReloadSettles(t *testing.T) {
	f, full := shippedCopy(t)
	logs := &policytest.SyncBuffer{}
	r, a := testReloader(t, f, logs)
	r.every, r.settle = 10*time.Millisecond, 300*time.Millisecond
	r.hup = make(chan os.Signal, 1)
	r.reloaded = make(chan struct{}, 1)
	edited := []byte(strings.Replace(string(full), `name = "sales"`, `name = "sales-emea"`, 1))
	var partial atomic.Int32 // reads of anything but the old or the new file
	r.readFile = func(name string) ([]byte, error) {
		b, err := os.ReadFile(name)
		if !bytes.Equal(b, full) && !bytes.Equal(b, edited) {
			partial.Add(1)
		}
		return b, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	w, err := os.OpenFile(f, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(edited); i += 512 { // in place, 512 bytes every 100 ms
		w.Write(edited[i:min(i+512, len(edited))])
		time.Sleep(100 * time.Millisecond)
	}
	w.Close()
	select {
	case <-r.reloaded:
	case <-time.After(10 * time.Second):
		t.Fatal("no reload")
	}
	if got := a.Policy().Summary().Rules; got[2] != "sales-emea" {
		t.Fatalf("rules %v", got)
	}
	if n := partial.Load(); n != 0 || strings.Contains(logs.String(), "refused") {
		t.Fatalf("%d reads of a partly written file\n%s", n, logs)
	}
}

// TestReloadWatchesDirectoryFile: a change of the directory's LDIF file
// is a reload: the directory is re-read, then live access re-validated,
// under the policy in force (not recompiled).
func TestReloadWatchesDirectoryFile(t *testing.T) {
	f, _ := shippedCopy(t)
	r, a := testReloader(t, f, nil)
	orig := a.Policy()
	ldif := filepath.Join(t.TempDir(), "dir.ldif")
	writeFile(t, ldif, []byte("version: 1\n"))
	r.watchDirectory(ldif)
	var calls []string
	r.refreshDir = func() error { calls = append(calls, "directory"); return nil }
	r.onSwap = func(*loaded) { calls = append(calls, "revalidate") }
	r.attempt(context.Background())
	if len(calls) != 0 {
		t.Fatalf("nothing changed, yet %v", calls)
	}
	writeFile(t, ldif, []byte("version: 1\n\n"))
	r.attempt(context.Background())
	if strings.Join(calls, ",") != "directory,revalidate" || a.Policy() != orig {
		t.Fatalf("after an LDIF change: %v (policy swapped: %v)", calls, a.Policy() != orig)
	}
	// SIGHUP re-reads the directory too, even when nothing changed.
	calls = nil
	r.force = true
	r.attempt(context.Background())
	if strings.Join(calls, ",") != "directory,revalidate" {
		t.Fatalf("after SIGHUP: %v", calls)
	}
}

// TestReloadOutOfFDs runs itself in a child process whose descriptors are
// all in use (RLIMIT_NOFILE lowered, the rest opened): a reload neither
// loads nor refuses the new file, it is postponed and logged, and it
// succeeds once descriptors are free — whether the config file itself or a
// trust file could not be opened.
func TestReloadOutOfFDs(t *testing.T) {
	if os.Getenv("GATEHOUSE_FD_CHILD") == "1" {
		reloadOutOfFDsChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReloadOutOfFDs$", "-test.v")
	cmd.Env = append(os.Environ(), "GATEHOUSE_FD_CHILD=1")
	cmd.Dir, _ = os.Getwd()
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestReloadOutOfFDs")) {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func reloadOutOfFDsChild(t *testing.T) {
	f, full := shippedCopy(t)
	logs := &policytest.SyncBuffer{}
	r, a := testReloader(t, f, logs)
	ctx := context.Background()
	rule := func() string { return a.Policy().Summary().Rules[2] }
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// exhaust uses up every descriptor; the returned func frees them.
	exhaust := func() func() {
		low := lim
		low.Cur = 256
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
			t.Fatal(err)
		}
		var held []*os.File
		for {
			h, err := os.Open(os.DevNull)
			if err != nil {
				break
			}
			held = append(held, h)
		}
		return func() {
			for _, h := range held {
				h.Close()
			}
			syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		}
	}
	for _, c := range []struct {
		name      string
		rule      string
		preloaded bool // the config file is read before descriptors run out: a trust file is what fails
	}{{"config file", "sales-a", false}, {"trust file", "sales-b", true}} {
		edited := []byte(strings.Replace(string(full), `name = "sales"`, `name = "`+c.rule+`"`, 1))
		writeFile(t, f, edited)
		if c.preloaded {
			r.readFile = func(string) ([]byte, error) { return edited, nil }
		}
		free := exhaust()
		r.attempt(ctx)
		r.attempt(ctx) // within the backoff: not even tried
		free()
		if rule() == c.rule {
			t.Fatalf("%s: loaded without descriptors?", c.name)
		}
		if !strings.Contains(logs.String(), "reload postponed: out of file descriptors") || strings.Contains(logs.String(), "reload refused") {
			t.Fatalf("%s: logs:\n%s", c.name, logs)
		}
		r.retryAt = time.Now() // skip the backoff
		r.attempt(ctx)
		if rule() != c.rule {
			t.Fatalf("%s: after descriptors were freed: %s\n%s", c.name, rule(), logs)
		}
		r.readFile = os.ReadFile
	}
}

// TestWriteConfigKeepsEndLast: tests that append a section to the shipped
// config still get a whole file.
func TestWriteConfigKeepsEndLast(t *testing.T) {
	f := writeConfig(t, func(s string) string { return s + "\n[[policy]]\nname = \"extra\"\ngroups = [\"sales\"]\n" })
	l, err := loadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.policy.Summary().Rules; len(got) != 4 || got[3] != "extra" {
		t.Fatalf("rules %v", got)
	}
}

// TestReloadPollOpensNothing: looking for changes only stats the files;
// the config file is opened when its stat changed (or was taken too close
// to a write to tell), and a touched file with the same content reloads
// nothing.
func TestReloadPollOpensNothing(t *testing.T) {
	f, _ := shippedCopy(t)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(f, old, old)
	r, _ := testReloader(t, f, nil)
	reads, swaps := 0, 0
	r.readFile = func(name string) ([]byte, error) { reads++; return os.ReadFile(name) }
	r.onSwap = func(*loaded) { swaps++ }
	ctx := context.Background()
	r.attempt(ctx) // the first look reads: the file was loaded before it was first stat'ed
	for range 5 {
		r.attempt(ctx)
	}
	if reads != 1 || swaps != 0 {
		t.Fatalf("unchanged file: %d reads, %d reloads; want 1 and 0", reads, swaps)
	}
	os.Chtimes(f, old.Add(time.Minute), old.Add(time.Minute))
	r.attempt(ctx)
	r.attempt(ctx)
	if reads != 2 || swaps != 0 {
		t.Fatalf("touched file: %d reads, %d reloads; want 2 and 0", reads, swaps)
	}
}
