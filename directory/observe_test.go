package directory

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

type countObs struct{ n atomic.Int64 }

func (c *countObs) Observe(d time.Duration) {
	if d >= 0 {
		c.n.Add(1)
	}
}

func TestFileReadyAndQueryObserver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dir.ldif")
	must(t, os.WriteFile(path, []byte(miniLDIF), 0o600))
	d, err := New(Config{Backend: "file", File: path}, testLogger(t))
	must(t, err)
	var obs countObs
	d.SetQueryObserver(&obs)
	startRun(t, d)
	if err := d.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	for range 3 {
		if _, _, err := d.Lookup(context.Background(), "user", aliceFields); err != nil {
			t.Fatal(err)
		}
	}
	if n := obs.n.Load(); n != 1 { // then cached
		t.Errorf("observed %d queries, want 1", n)
	}
	must(t, os.Remove(path))
	if err := d.Ready(); err == nil {
		t.Error("Ready with the file gone")
	}
}

// TestLDAPReadyRefused points the pool at a loopback port nobody listens on.
func TestLDAPReadyRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	ln.Close()
	for _, stale := range []bool{false, true} {
		cfg := Config{Backend: "ldap", BaseDN: "dc=example,dc=com", LDAP: LDAPConfig{URLs: []string{"ldap://" + addr}, InsecurePlaintext: true}}
		if stale {
			cfg.OnOutage = "serve_stale"
		}
		d, err := New(cfg, testLogger(t))
		must(t, err)
		startRun(t, d)
		eventually(t, 5*time.Second, func() error {
			err := d.Ready()
			switch {
			case stale && err != nil:
				return err
			case !stale && err == nil:
				return errorf("ready while the server refuses")
			}
			return nil
		})
	}
}
