package radius

import (
	"crypto/x509"
	"encoding/json"
	"net/netip"

	"context"
	"fmt"
	"github.com/gatehouse/gatehouse/policy"
	"net"
	"sync/atomic"
	"testing"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"

	"github.com/gatehouse/gatehouse/store/spool"
	"github.com/gatehouse/gatehouse/store/wifi"
)

// startBenchSpool opens a spool replaying into store until the benchmark
// ends.
func startBenchSpool(b *testing.B, store wifi.Store) *spool.Spool {
	return startSpool(b, spool.Config{Dir: b.TempDir(), Node: "bench"}, store)
}

// BenchmarkAccountingToPostgres: Interim-Updates over UDP from 16
// concurrent senders with accounting = "store": each is acknowledged once
// in the node's spool (fsynced, group commit) while the replayer commits
// them to PostgreSQL. acked/s is the NAS-facing rate; stored/s counts until
// the last record is committed in radius_accounting.
func BenchmarkAccountingToPostgres(b *testing.B) {
	_, store := pgStore(b)
	sp := startBenchSpool(b, store)
	s := startServerWith(b, func(s *Server) { s.SetShared(wifi.Node{Spool: sp, Store: store}) },
		func(c *Config) { c.Accounting = AccountingStore })
	var seq atomic.Uint64
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("udp", s.AcctAddr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		for pb.Next() {
			p := layeh.New(layeh.CodeAccountingRequest, []byte(testSecret))
			p.Identifier = byte(seq.Add(1))
			rfc2866.AcctStatusType_Set(p, rfc2866.AcctStatusType_Value_InterimUpdate)
			rfc2866.AcctSessionID_SetString(p, fmt.Sprint(seq.Load())) // distinct records
			rfc2865.UserName_SetString(p, "alice@corp.example.com")
			enc, _ := p.Encode()
			for {
				c.Write(enc)
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Read(buf); err == nil {
					break
				}
			}
		}
	})
	acked := time.Since(start)
	for sp.Stats().Records > 0 {
		time.Sleep(time.Millisecond)
	}
	stored := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/acked.Seconds(), "acked/s")
	b.ReportMetric(float64(b.N)/stored.Seconds(), "stored/s")
}

// BenchmarkEAPTLSAuthShared compares a whole EAP-TLS login's server work
// (as BenchmarkEAPTLSAuth, TLS 1.3) with one node (file) and with the
// PostgreSQL store: with postgres each Accept also hands its session
// record to the spool writer — without waiting for it — so the two should
// be equal (target ≥ 0.95×). The spool writer and replayer run meanwhile.
func BenchmarkEAPTLSAuthShared(b *testing.B) {
	for _, backend := range []string{"file", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			ip := newInproc(b, nil)
			if backend == "postgres" {
				_, store := pgStore(b)
				sp := startBenchSpool(b, store)
				ip.s.SetShared(wifi.Node{Spool: sp, Store: store})
				b.Cleanup(ip.s.startShared())
			}
			p := getPKI(b)
			conf := p.clientTLS(&p.alice, 0)
			conf.ClientSessionCache = nil
			b.ReportAllocs()
			b.StopTimer()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				authInproc(b, ip, conf, nil)
			}
			if backend == "postgres" {
				b.StopTimer()
				if st := ip.s.SharedStats(); st.SessionsLost != 0 {
					b.Fatalf("shared stats %+v", st)
				}
			}
		})
	}
}

// discardShared takes records and forgets them: the spool writer's cost
// is left out, to isolate what an Accept itself does.
type discardShared struct{}

func (discardShared) Append(string, ...[]byte) error { return nil }
func (discardShared) LookupSession(context.Context, string) (json.RawMessage, bool, error) {
	return nil, false, nil
}

// BenchmarkRememberAccept is what the login path does for the session
// table on each Accept, with one node (file) and with a shared store
// (postgres: also encoding the session record and handing it to the
// spool writer, never waiting for it).
func BenchmarkRememberAccept(b *testing.B) {
	p := getPKI(b)
	leaf, _ := x509.ParseCertificate(p.alice.Certificate[0])
	d := &policy.Decision{Allowed: true, Rule: "engineering", Chain: []*x509.Certificate{leaf}, WiFi: policy.WiFi{Permitted: true, VLAN: "10"}}
	req := acctPacket(b, 1, "s", "alice", testStation)
	src := netip.MustParseAddrPort("127.0.0.1:4000")
	for _, backend := range []string{"file", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			ip := newInproc(b, nil)
			if backend == "postgres" {
				ip.s.SetShared(discardShared{})
				b.Cleanup(ip.s.startShared())
			}
			n := ip.s.nas.lookup(src.Addr())
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				_, tok := ip.s.rememberAccept(n, src, req, "alice", d)
				ip.s.live.mu.Lock()
				ip.s.live.removeLocked(ip.s.live.byToken[tok])
				ip.s.live.mu.Unlock()
			}
		})
	}
}
