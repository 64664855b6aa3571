package main

import (
	"context"
	"log/slog"
	"os"
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
	r := newReloader(f, raw, a, slog.New(slog.DiscardHandler))
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
