package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestExplainGolden runs `gatehouse explain` on the shipped config for each
// test certificate and compares the output with testdata/explain/*.golden.
// Decisions are made at a fixed time so the files stay valid.
func TestExplainGolden(t *testing.T) {
	tests := []struct {
		cert string
		code int
		want string // also asserted directly, so a bad golden cannot hide it
	}{
		{"alice.pem", exitOK, "ALLOW (allowed): rule engineering allows access"},
		{"alice-chain.pem", exitOK, "ALLOW"},
		{"bob.pem", exitOK, "rule sales allows access"},
		{"erin-chain.pem", exitOK, "rule engineering"},
		{"thermostat-0001.pem", exitOK, "rule thermostats"},
		{"frank.pem", exitDenied, "DENY (no_rule)"},
		{"carol.pem", exitDenied, "DENY (revoked)"},
		{"dave.pem", exitDenied, "DENY (expired)"},
		{"mallory-wrongca.pem", exitDenied, "DENY (untrusted)"},
		{"mallory-spoofed-chain.pem", exitDenied, "DENY (untrusted)"},
		{"noeku.pem", exitDenied, "DENY (bad_key_usage)"},
	}
	for _, tt := range tests {
		t.Run(tt.cert, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{"explain", "-config", "../../config.toml", "--at", "2030-01-01T00:00:00Z",
				"--cert", "../../testdata/pki/" + tt.cert}, &out, &errb)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tt.want) {
				t.Fatalf("output lacks %q:\n%s", tt.want, out.String())
			}
			golden := filepath.Join("testdata", "explain", strings.TrimSuffix(tt.cert, ".pem")+".golden")
			if *update {
				os.MkdirAll(filepath.Dir(golden), 0o755)
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if out.String() != string(want) {
				t.Fatalf("output differs from %s (run with -update):\n%s", golden, out.String())
			}
		})
	}
}
