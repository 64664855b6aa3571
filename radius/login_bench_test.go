package radius

import (
	"context"
	"crypto/tls"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/audit"
)

// benchDir is a directory that knows alice as an engineer.
type benchDir struct{}

func (benchDir) Lookup(context.Context, string, map[string]string) (string, []string, error) {
	return "CN=Alice Example,OU=People,DC=example,DC=com", []string{"CN=Engineering,OU=Groups,DC=example,DC=com"}, nil
}

// realAuth is the real policy.Authorizer on the shipped trust
// configuration's shape: the test PKI's client CAs and intermediates, every
// CRL, revocation required, a group rule.
func realAuth(tb testing.TB) *policy.Authorizer {
	f := func(n string) string { return filepath.Join(pkiDir, n) }
	p, err := policy.Compile(&policy.Config{
		Trust: policy.TrustConfig{
			ClientCA:      []string{f("employee-root.pem"), f("device-ca.pem")},
			Intermediates: []string{f("employee-int.pem"), f("long-int1.pem"), f("long-int2.pem"), f("long-int3.pem")},
			CRL: []string{f("employee-root.crl"), f("employee-int.crl"), f("device-ca.crl"),
				f("long-int1.crl"), f("long-int2.crl"), f("long-int3.crl")},
			Revocation: policy.RevocationRequire,
		},
		Rules: []policy.RuleConfig{{Name: "engineering", Groups: []string{"CN=Engineering,OU=Groups,DC=example,DC=com"},
			WiFi: &policy.WiFiConfig{VLAN: "10"}}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return policy.NewAuthorizer(p, benchDir{}, nil)
}

// BenchmarkLogin measures the server's work for one whole EAP-TLS login as
// served: RADIUS, EAP, TLS, the real policy (chain, CRLs, directory,
// rule) and the audit trail (to io.Discard); the supplicant's work is
// excluded from the timing. cpu-ns/op is the process's CPU time while the
// server works (getrusage): unlike ns/op, it does not grow when other
// processes load the machine. alice presents her chain (leaf and issuing
// CA), ECDSA P-256. "full" is a full handshake, "resumed" resumes the
// previous login's session; the group is the key exchange the supplicant
// offers (X25519MLKEM768: the post-quantum hybrid, Go's default).
//
//	go test -run XXX -bench Login -cpuprofile cpu.out ./radius
//	go tool pprof -top radius.test cpu.out
func BenchmarkLogin(b *testing.B) {
	for _, v := range []struct {
		name   string
		max    uint16
		resume bool
		group  tls.CurveID
	}{
		{"tls12/full/x25519", tls.VersionTLS12, false, tls.X25519},
		{"tls13/full/x25519", tls.VersionTLS13, false, tls.X25519},
		{"tls13/full/x25519mlkem768", tls.VersionTLS13, false, tls.X25519MLKEM768},
		{"tls12/resumed/x25519", tls.VersionTLS12, true, tls.X25519},
		{"tls13/resumed/x25519", tls.VersionTLS13, true, tls.X25519},
		{"tls13/resumed/x25519mlkem768", tls.VersionTLS13, true, tls.X25519MLKEM768},
	} {
		b.Run(v.name, func(b *testing.B) {
			ip := newInproc(b, nil)
			ip.s.auth = realAuth(b)
			aw, err := audit.New(audit.Config{Output: io.Discard}, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- aw.Run(ctx) }()
			defer func() { cancel(); <-done }()
			ip.s.SetAuditor(aw)
			p := getPKI(b)
			conf := p.clientTLS(&p.aliceChain, v.max)
			conf.CurvePreferences = []tls.CurveID{v.group, tls.CurveP256}
			conf.ClientSessionCache = nil
			if v.resume {
				conf.ClientSessionCache = tls.NewLRUClientSessionCache(1)
				b.StopTimer()
				authInproc(b, ip, conf, nil) // the session to resume
			}
			b.ReportAllocs()
			b.StopTimer()
			b.ResetTimer()
			var cpu time.Duration
			for i := 0; i < b.N; i++ {
				authInproc(b, ip, conf, &cpu)
			}
			b.StopTimer()
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
			if st := ip.s.TLSSessions(); v.resume && st.Resumed < uint64(b.N) {
				b.Fatalf("%d of %d logins resumed", st.Resumed, b.N)
			}
		})
	}
}
