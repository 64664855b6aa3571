package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

// TestServeWeakKeyRejected: a real supplicant (eapol_test, OpenSSL told to
// allow it) presents an RSA-1024 certificate from the trusted employee CA,
// for bob, whom the sales rule admits with a strong key. gatehouse answers
// Access-Reject with code weak_key, as FreeRADIUS/OpenSSL refuse "key too
// weak"; the same identity with an RSA-2048 key is accepted.
func TestServeWeakKeyRejected(t *testing.T) {
	bin := policytest.RequireTool(t, "eapol_test")
	pki, _ := filepath.Abs("../../testdata/pki")
	inter := policytest.MustLoadCA(t, pki+"/employee-int.pem", pki+"/employee-int.key")
	dir := t.TempDir()
	for name, bits := range map[string]int{"weak": 1024, "strong": 2048} {
		l := inter.MustIssue(t, policytest.LeafOptions{CN: "Bob Example", Emails: []string{"bob@example.com"}, RSABits: bits})
		if err := os.WriteFile(filepath.Join(dir, name+".pem"), l.ChainPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".key"), l.KeyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	auth, acct := freeUDPPort(t), freeUDPPort(t)
	f := writeConfig(t, func(s string) string {
		s = replace(`listen = "127.0.0.1:1812"`, fmt.Sprintf(`listen = "127.0.0.1:%d"`, auth))(s)
		return replace(`accounting_listen = "127.0.0.1:1813"`, fmt.Sprintf(`accounting_listen = "127.0.0.1:%d"`, acct))(s)
	})
	srv := startServe(t, f, nil)
	for _, tc := range []struct {
		name   string
		tls13  bool
		accept bool
	}{{"weak", false, false}, {"weak", true, false}, {"strong", true, true}} {
		out, err := eapolTestWith(t, bin, auth, pki, dir, tc.name, tc.tls13)
		switch {
		case tc.accept && (err != nil || !strings.Contains(out, "MPPE keys OK: 1  mismatch: 0")):
			t.Errorf("%s tls1.3=%v: want accept; err %v\n%s", tc.name, tc.tls13, err, tail(out))
		case !tc.accept && (err == nil || !strings.Contains(out, "CTRL-EVENT-EAP-FAILURE") || !strings.Contains(out, "Access-Reject")):
			t.Errorf("%s tls1.3=%v: want Access-Reject; err %v\n%s", tc.name, tc.tls13, err, tail(out))
		}
	}
	// The reject is gatehouse's decision on the certificate it received,
	// not the supplicant failing to load its key.
	waitFor(t, "weak_key decision logged", func() bool { return strings.Contains(srv.logs.String(), "weak_key") })
	if !strings.Contains(srv.logs.String(), "weak RSA-1024 key") {
		t.Errorf("log lacks the reason:\n%s", tail(srv.logs.String()))
	}
	srv.stopClean(t)
}

// eapolTestWith is eapolTest with the client certificate name.pem and key
// name.key from dir, and OpenSSL's security level lowered so that it sends
// a weak key rather than refusing it itself.
func eapolTestWith(t *testing.T, bin string, port int, pki, dir, name string, tls13 bool) (string, error) {
	t.Helper()
	return eapolRun(t, bin, port, pki, filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key"), tls13, `openssl_ciphers="DEFAULT@SECLEVEL=0"`)
}
