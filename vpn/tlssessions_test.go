package vpn

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// A client resumes its enrollment TLS session until ForgetTLSSessions
// (called at each policy or trust reload); its next connection is a full
// handshake, and the session made then resumes again. TLS 1.2 tickets and
// TLS 1.3 PSKs alike.
func TestForgetTLSSessionsStopsResumption(t *testing.T) {
	ca := newTestCA(t)
	auth := &fakeAuth{}
	auth.set("alice", allow("engineering", engineeringAccess))
	env := startServer(t, auth, ca, t.TempDir(), nil)
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{
				Certificates: []tls.Certificate{ca.issue(t, "alice", false)}, RootCAs: ca.pool,
				MaxVersion: version, ClientSessionCache: tls.NewLRUClientSessionCache(8),
			}}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			// resumed makes one request on a new connection and reports
			// whether its handshake resumed a session.
			resumed := func(what string) bool {
				t.Helper()
				resp, err := hc.Get(env.url() + "/v1/me")
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.TLS == nil || resp.TLS.Version != version {
					t.Fatalf("%s: TLS %v", what, resp.TLS)
				}
				return resp.TLS.DidResume
			}
			if resumed("first") {
				t.Fatal("first connection resumed")
			}
			if !resumed("second") {
				t.Fatal("second connection did not resume: the test proves nothing")
			}
			env.srv.ForgetTLSSessions()
			for i := range 2 {
				if resumed(fmt.Sprint("after forget ", i)) {
					t.Fatalf("connection %d after ForgetTLSSessions resumed a session made before it", i)
				}
				if i == 0 && !resumed("after forget, again") {
					t.Fatal("a session made after ForgetTLSSessions does not resume")
				}
				env.srv.ForgetTLSSessions()
			}
		})
	}
}
