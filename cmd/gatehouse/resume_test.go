package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestServeReloadEndsResumption: a TLS session resumes while the policy
// stays, and the first login after a policy reload is a full handshake (the
// reload drops every cached TLS session), still accepted.
func TestServeReloadEndsResumption(t *testing.T) {
	auth, acct := freeUDPPort(t), freeUDPPort(t)
	f := writeConfig(t, func(s string) string {
		s = replace(`listen = "127.0.0.1:1812"`, fmt.Sprintf(`listen = "127.0.0.1:%d"`, auth))(s)
		return replace(`accounting_listen = "127.0.0.1:1813"`, fmt.Sprintf(`accounting_listen = "127.0.0.1:%d"`, acct))(s)
	})
	srv := startServe(t, f, nil)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c, conf := supplicant(t, fmt.Sprintf("127.0.0.1:%d", auth), "alice")
		conf.MinVersion, conf.MaxVersion = v, v
		conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		login := func(wantResumed bool) {
			t.Helper()
			res, err := c.Authenticate(context.Background(), "alice", conf)
			if err != nil || !res.Accepted {
				t.Fatalf("tls %x: login: %v, accepted %v\n%s", v, err, res.Accepted, tail(srv.logs.String()))
			}
			if res.TLS.DidResume != wantResumed {
				t.Errorf("tls %x: resumed %v, want %v", v, res.TLS.DidResume, wantResumed)
			}
		}
		login(false)
		login(true)
		// Touch the policy: a reload, rules unchanged.
		n := strings.Count(srv.logs.String(), "policy reloaded")
		b, _ := os.ReadFile(f)
		tmp := f + ".new"
		os.WriteFile(tmp, append(b, fmt.Sprintf("\n# reload %x\n", v)...), 0o600)
		os.Rename(tmp, f)
		waitFor(t, "policy reload", func() bool { return strings.Count(srv.logs.String(), "policy reloaded") > n })
		login(false)
		login(true)
	}
	srv.stopClean(t)
}
