package vpn

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/policy"
)

// TestEnrollCAFileStrict: the enrollment client's CA file is read like
// every PEM input: a block that is not a certificate is an error, never
// skipped.
func TestEnrollCAFileStrict(t *testing.T) {
	const pki = "../testdata/pki/"
	ca, err := os.ReadFile(pki + "server-ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(pki + "alice.key")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"key-in-ca.pem": append(append([]byte{}, ca...), key...),
		"trailing.pem":  append(append([]byte{}, ca...), "garbage\n"...),
		"empty.pem":     nil,
	} {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Enroll(context.Background(), EnrollOptions{Server: "https://127.0.0.1:1", CertFile: pki + "alice-chain.pem", KeyFile: pki + "alice.key", CAFile: f})
		if err == nil || !strings.Contains(err.Error(), "vpn: enroll: CA: "+f) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// TestDenialNamesTheCause: each trust-step code tells the employee its own
// trouble, not a neighbour's.
func TestDenialNamesTheCause(t *testing.T) {
	for code, want := range map[policy.Code]string{
		policy.CodeExpired:       "certificate expired",
		policy.CodeNotYetValid:   "not valid yet",
		policy.CodeWeakKey:       "key too weak",
		policy.CodeWeakSignature: "weak algorithm",
	} {
		if e := denial(policy.Decision{Code: code}); e.status != http.StatusForbidden || !strings.Contains(e.msg, want) {
			t.Errorf("%v: %d %q, want 403 containing %q", code, e.status, e.msg, want)
		}
	}
}
