package vpn

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/policy"
)

func (e *testEnv) post(cert tls.Certificate, body string) (int, string) {
	e.t.Helper()
	resp, err := e.ca.httpClient(cert).Post(e.url()+"/v1/enroll", "application/json", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func keyBody(k Key) string {
	b, _ := json.Marshal(EnrollRequest{PublicKey: k.String()})
	return string(b)
}

func newPub(t testing.TB) Key {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// devicePeers returns the public keys the device knows, from UAPI get.
func (e *testEnv) devicePeers() []string {
	out, err := e.srv.dev.IpcGet()
	if err != nil {
		e.t.Fatal(err)
	}
	var keys []string
	for _, l := range strings.Split(out, "\n") {
		if k, ok := strings.CutPrefix(l, "public_key="); ok {
			keys = append(keys, k)
		}
	}
	return keys
}

func TestEnrollErrors(t *testing.T) {
	ca := newTestCA(t)
	auth := &fakeAuth{}
	auth.set("alice", allow("engineering", engineeringAccess))
	auth.set("carol", policy.Decision{Code: policy.CodeRevoked, Reason: "serial 1f revoked by employee-int.crl"})
	auth.set("frank", policy.Decision{Code: policy.CodeNoRule, Reason: "no rule matched groups [cn=secret-project]"})
	auth.set("dave", policy.Decision{Code: policy.CodeExpired, Reason: "expired"})
	auth.set("wifi-only", policy.Decision{Allowed: true, Code: policy.CodeAllowed, Rule: "wifi-only"})
	auth.set("outage", policy.Decision{Code: policy.CodeDirectoryUnavailable, Reason: "ldap://dc1: timeout"})
	env := startServer(t, auth, ca, t.TempDir(), nil)
	alice := ca.issue(t, "alice", false)

	tests := []struct {
		name   string
		cn     string
		body   string
		status int
		msg    string
	}{
		{"bad json", "alice", `{"public_key":`, 400, "not the expected JSON"},
		{"unknown field", "alice", `{"public_key":"x","admin":true}`, 400, "not the expected JSON"},
		{"bad key", "alice", `{"public_key":"AAAA"}`, 400, "public_key"},
		{"zero key", "alice", keyBody(Key{}), 400, "low-order"},
		{"low-order key", "alice", keyBody(lowOrderPoints(t)[3]), 400, "low-order"},
		{"too large", "alice", `{"public_key":"` + strings.Repeat("A", 8000) + `"}`, 413, "too large"},
		{"revoked", "carol", keyBody(newPub(t)), 403, "certificate revoked"},
		{"no rule", "frank", keyBody(newPub(t)), 403, "not permitted to use the VPN"},
		{"expired", "dave", keyBody(newPub(t)), 403, "certificate expired"},
		{"no vpn access", "wifi-only", keyBody(newPub(t)), 403, "not permitted to use the VPN"},
		{"not in directory", "nobody", keyBody(newPub(t)), 403, "known account"},
		{"directory down", "outage", keyBody(newPub(t)), 503, "try again later"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert := alice
			if tc.cn != "alice" {
				cert = ca.issue(t, tc.cn, false)
			}
			status, body := env.post(cert, tc.body)
			if status != tc.status || !strings.Contains(body, tc.msg) {
				t.Fatalf("got %d %s, want %d %q", status, body, tc.status, tc.msg)
			}
			var e ErrorResponse
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
				t.Fatalf("not a JSON error: %s", body)
			}
			for _, leak := range []string{"employee-int", "secret-project", "ldap://", "serial 1f"} {
				if strings.Contains(body, leak) {
					t.Errorf("answer leaks policy internals (%q): %s", leak, body)
				}
			}
		})
	}
	if n := env.srv.peerCount(); n != 0 {
		t.Errorf("peers after refusals: %d", n)
	}
	// Wrong method and path.
	resp, err := ca.httpClient(alice).Get(env.url() + "/v1/enroll")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/enroll: %d", resp.StatusCode)
	}
}

func TestEnrollWithoutClientCertificate(t *testing.T) {
	ca := newTestCA(t)
	env := startServer(t, &fakeAuth{}, ca, t.TempDir(), nil)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	_, err := hc.Post(env.url()+"/v1/enroll", "application/json", strings.NewReader(keyBody(newPub(t))))
	if err == nil {
		t.Fatal("TLS handshake without client certificate succeeded")
	}
}

func TestReenrollReplacesKey(t *testing.T) {
	ca := newTestCA(t)
	auth := &fakeAuth{}
	auth.set("alice", allow("engineering", engineeringAccess))
	auth.set("bob", allow("engineering", engineeringAccess))
	env := startServer(t, auth, ca, t.TempDir(), nil)
	alice := ca.issue(t, "alice", false)
	k1, k2 := newPub(t), newPub(t)
	if st, b := env.post(alice, keyBody(k1)); st != 200 {
		t.Fatal(st, b)
	}
	var r2 EnrollResponse
	st, b := env.post(alice, keyBody(k2))
	if st != 200 {
		t.Fatal(st, b)
	}
	json.Unmarshal([]byte(b), &r2)
	if r2.Address != "100.96.0.2" {
		t.Errorf("re-enrollment moved the address to %s", r2.Address)
	}
	if got := env.devicePeers(); len(got) != 1 || got[0] != k2.hex() {
		t.Errorf("device peers %v, want only the new key", got)
	}
	// Another certificate may not take alice's key.
	if st, b := env.post(ca.issue(t, "bob", false), keyBody(k2)); st != http.StatusConflict {
		t.Errorf("key reuse: %d %s", st, b)
	}
	// Unenroll frees the peer.
	req, _ := http.NewRequest(http.MethodDelete, env.url()+"/v1/me", nil)
	resp, err := ca.httpClient(alice).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || len(env.devicePeers()) != 0 || env.srv.peerCount() != 0 {
		t.Errorf("unenroll: %d, device %v", resp.StatusCode, env.devicePeers())
	}
}

func TestPeersPerIdentityLimit(t *testing.T) {
	ca := newTestCA(t)
	auth := &fakeAuth{}
	d := allow("engineering", engineeringAccess)
	d.Identity = policy.Identity{Kind: policy.KindUser, Field: "email", Name: "carl@example.com"}
	auth.set("carl", d)
	env := startServer(t, auth, ca, t.TempDir(), func(c *Config) { c.MaxPeersPerIdentity = 2 })
	for i := 0; i < 2; i++ {
		if st, b := env.post(ca.issue(t, "carl", false), keyBody(newPub(t))); st != 200 {
			t.Fatal(i, st, b)
		}
	}
	st, b := env.post(ca.issue(t, "carl", false), keyBody(newPub(t)))
	if st != 403 || !strings.Contains(b, "device limit") {
		t.Fatalf("third device: %d %s", st, b)
	}
}

func TestPoolExhausted(t *testing.T) {
	ca := newTestCA(t)
	auth := &fakeAuth{}
	auth.set("alice", allow("engineering", engineeringAccess))
	auth.set("bob", allow("engineering", engineeringAccess))
	env := startServer(t, auth, ca, t.TempDir(), func(c *Config) {
		c.AddressPool = "100.96.0.0/30" // one client address
		c.AddressPool6 = ""
	})
	if st, b := env.post(ca.issue(t, "alice", false), keyBody(newPub(t))); st != 200 {
		t.Fatal(st, b)
	}
	st, b := env.post(ca.issue(t, "bob", false), keyBody(newPub(t)))
	if st != 503 || !strings.Contains(b, "no tunnel address") {
		t.Fatalf("exhausted pool: %d %s", st, b)
	}
}

func TestEnrollClientErrors(t *testing.T) {
	ca := newTestCA(t)
	auth := &fakeAuth{}
	auth.set("carol", policy.Decision{Code: policy.CodeRevoked})
	env := startServer(t, auth, ca, t.TempDir(), nil)
	_, err := env.enroll(ca.issue(t, "carol", false))
	var ee *EnrollError
	if !errors.As(err, &ee) || ee.Status != 403 || ee.Message != "certificate revoked; request a new certificate" {
		t.Fatalf("got %v", err)
	}
}

func FuzzParseEnrollRequest(f *testing.F) {
	f.Add([]byte(`{"public_key":"x+LRK+iYHe4GejbVoGoKUg2h1hKs3WPIRELIQsMiwSc="}`))
	f.Add([]byte(`{"public_key":""}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"public_key":"AAAA"} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parseEnrollRequest(b)
		if err == nil {
			if k.IsZero() || k.IsLowOrder() {
				t.Fatal("accepted a low-order key")
			}
			var w uapiWriter
			w.addPeer(k)
			if strings.Count(w.String(), "\n") != 2 {
				t.Fatalf("uapi text %q", w.String())
			}
		}
		if err != nil && bytes.Contains([]byte(err.Error()), []byte("\n")) {
			t.Fatal("multi-line error")
		}
	})
}

func TestConcurrentEnrollments(t *testing.T) {
	ca := newTestCA(t)
	auth := &fakeAuth{}
	const n = 40
	certs := make([]tls.Certificate, n)
	for i := range certs {
		cn := fmt.Sprintf("user%d", i)
		auth.set(cn, allow("engineering", engineeringAccess))
		certs[i] = ca.issue(t, cn, false)
	}
	env := startServer(t, auth, ca, t.TempDir(), nil)
	addrs := make([]string, n)
	var wg sync.WaitGroup
	for i := range certs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(EnrollRequest{PublicKey: newPub(t).String()})
			// One client per source address, as in production (a single
			// address would meet enroll_max_conns_per_ip).
			hc := fromSource(ca.httpClient(certs[i]), fmt.Sprintf("127.0.1.%d", 1+i))
			resp, err := hc.Post(env.url()+"/v1/enroll", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var r EnrollResponse
			json.NewDecoder(resp.Body).Decode(&r)
			addrs[i] = r.Address
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, a := range addrs {
		if a == "" || seen[a] {
			t.Fatalf("enrollment %d: address %q (duplicate or missing)", i, a)
		}
		seen[a] = true
	}
	if st := env.srv.Stats(); st.Peers != n || st.Leases != n || len(env.devicePeers()) != n {
		t.Fatalf("stats %+v, device peers %d", st, len(env.devicePeers()))
	}
}
