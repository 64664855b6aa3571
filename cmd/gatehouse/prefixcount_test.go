//go:build prefixcount

package main

// The figure behind README's "Operating safely": how many prefixes of the
// shipped config.toml loadConfig accepts, by rule count. Self-contained so
// that it runs on older commits too:
//
//	go test -tags prefixcount ./cmd/gatehouse -run TestPrefixCount -v

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPrefixCount(t *testing.T) {
	b, err := os.ReadFile("../../config.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root, _ := filepath.Abs("../..")
	os.Symlink(filepath.Join(root, "testdata"), filepath.Join(dir, "testdata"))
	f := filepath.Join(dir, "config.toml")
	loads, byRules := 0, map[int]int{}
	for n := range len(b) {
		if err := os.WriteFile(f, b[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		if l, err := loadConfig(f); err == nil {
			loads++
			byRules[len(l.policy.Summary().Rules)]++
		}
	}
	t.Logf("%d prefixes of config.toml: %d load; by number of rules: %v", len(b), loads, byRules)
}
