package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

func TestReload(t *testing.T) {
	f := writeConfig(t, nil)
	l, err := loadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(f)
	a := policy.NewAuthorizer(l.policy, nil, nil)
	r := newReloader(l, a, slog.New(slog.DiscardHandler))
	r.every = 20 * time.Millisecond
	r.hup = make(chan os.Signal, 1)
	r.reloaded = make(chan struct{}, 1)
	swaps := 0
	r.onSwap = func(*loaded) { swaps++ }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	wait := func() {
		t.Helper()
		select {
		case <-r.reloaded:
		case <-time.After(10 * time.Second):
			t.Fatal("no reload")
		}
	}
	rules := func() []string { return a.Policy().Summary().Rules }

	// A change of the file is picked up and swapped.
	writeFile(t, f, []byte(replace(`name = "sales"`, `name = "sales-emea"`)(string(raw))))
	wait()
	if got := rules(); got[2] != "sales-emea" {
		t.Fatalf("after change: %v", got)
	}
	// A broken file is refused; the policy in force stays.
	writeFile(t, f, []byte(replace(`vlan = "20"`, `vlan = "9999"`)(string(raw))))
	wait()
	if got := rules(); got[2] != "sales-emea" {
		t.Fatalf("after broken file: %v", got)
	}
	// SIGHUP forces a reload.
	writeFile(t, f, raw)
	wait()
	r.hup <- syscall.SIGHUP
	wait()
	if got := rules(); got[2] != "sales" || swaps != 3 {
		t.Fatalf("after SIGHUP: %v, %d swaps", got, swaps)
	}
	// A replaced CRL file is picked up without touching the config: here a
	// broken CRL, so the reload is refused and logged.
	crl := l.cfg.Trust.CRL[1] // employee-int.crl, inside the repository
	if !strings.HasSuffix(crl, "employee-int.crl") {
		t.Fatalf("unexpected CRL order: %v", l.cfg.Trust.CRL)
	}
	copyCRL := filepath.Join(t.TempDir(), "int.crl")
	orig, _ := os.ReadFile(crl)
	writeFile(t, copyCRL, orig)
	withCopy := strings.Replace(string(raw), `"testdata/pki/employee-int.crl"`, `"`+copyCRL+`"`, 1)
	withCopy = strings.ReplaceAll(withCopy, `"`+filepath.Dir(crl)+`/employee-int.crl"`, `"`+copyCRL+`"`)
	writeFile(t, f, []byte(withCopy))
	wait()
	if swaps != 4 {
		t.Fatalf("config pointing at the CRL copy: %d swaps", swaps)
	}
	// Each replacement gets its own modification time, set explicitly:
	// no waiting for the clock to tick past the filesystem's granularity.
	mtime := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	writeFileAt(t, copyCRL, []byte("not a CRL"), mtime)
	wait()
	if swaps != 4 {
		t.Fatalf("a broken CRL was swapped in")
	}
	writeFileAt(t, copyCRL, orig, mtime.Add(time.Hour))
	wait()
	if swaps != 5 {
		t.Fatalf("CRL change not picked up: %d swaps", swaps)
	}
}

// writeFile replaces f atomically, as editors that save safely do.
func writeFile(t *testing.T, f string, b []byte) {
	t.Helper()
	tmp := f + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f); err != nil {
		t.Fatal(err)
	}
}

// writeFileAt is writeFile with the modification time set to mtime.
func writeFileAt(t *testing.T, f string, b []byte, mtime time.Time) {
	t.Helper()
	tmp := f + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f); err != nil {
		t.Fatal(err)
	}
}
