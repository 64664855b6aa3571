package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// TestServeReloadForgetsEnrollTLSSessions: under `gatehouse serve`, a VPN
// client resumes its enrollment API TLS session until a reload swaps the
// policy (here SIGHUP); its first connection after the reload is a full
// handshake (its chain presented again), TLS 1.2 and 1.3 alike.
func TestServeReloadForgetsEnrollTLSSessions(t *testing.T) {
	ls := startLiveServe(t, true, nil)
	pki := "../../testdata/pki/"
	cert, err := tls.LoadX509KeyPair(pki+"alice.pem", pki+"alice.key")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	ca, _ := policy.ReadCertificates(pki + "server-ca.pem")
	roots.AddCert(ca[0])
	clients := map[uint16]*http.Client{}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots,
			ServerName: "gatehouse.test", MaxVersion: v, ClientSessionCache: tls.NewLRUClientSessionCache(4)}}
		t.Cleanup(tr.CloseIdleConnections)
		clients[v] = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	resumed := func(v uint16, what string) bool {
		t.Helper()
		resp, err := clients[v].Get("https://" + ls.s.vpn.EnrollAddr().String() + "/v1/me")
		if err != nil {
			t.Fatalf("%s %s: %v", tls.VersionName(v), what, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.TLS == nil || resp.TLS.Version != v {
			t.Fatalf("%s %s: TLS %v", tls.VersionName(v), what, resp.TLS)
		}
		return resp.TLS.DidResume
	}
	for v := range clients {
		resumed(v, "first")
		if !resumed(v, "before the reload") {
			t.Fatalf("%s: no resumption before the reload: the test proves nothing", tls.VersionName(v))
		}
	}
	n := strings.Count(ls.logs.String(), "vpn: enrollment TLS sessions forgotten")
	ls.hup <- syscall.SIGHUP
	waitFor(t, "the reload", func() bool { return strings.Count(ls.logs.String(), "vpn: enrollment TLS sessions forgotten") > n })
	for v := range clients {
		if resumed(v, "after the reload") {
			t.Errorf("%s: a session made before the reload resumed after it", tls.VersionName(v))
		}
		if !resumed(v, "after the reload, again") {
			t.Errorf("%s: a session made after the reload does not resume", tls.VersionName(v))
		}
	}
	ls.stopClean(t)
}
