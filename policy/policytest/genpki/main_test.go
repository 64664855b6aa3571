package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestKeyFileModes checks the generator's output modes: private keys 0600
// (also when a key file already exists world-readable from an older run),
// certificates and CRLs 0644.
func TestKeyFileModes(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "old.key")
	if err := os.WriteFile(stale, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &writer{dir: dir}
	w.file("alice.key", []byte("k"), "key")
	w.file("old.key", []byte("k2"), "key over an existing 0644 file")
	w.file("alice.pem", []byte("c"), "cert")
	w.file("employee-root.crl", []byte("c"), "crl")
	if w.err != nil {
		t.Fatal(w.err)
	}
	for name, want := range map[string]os.FileMode{
		"alice.key": 0o600, "old.key": 0o600, "alice.pem": 0o644, "employee-root.crl": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got&^want != 0 || (want == 0o600 && got != 0o600) {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
	}
}
