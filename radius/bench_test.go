package radius

import (
	"context"
	"crypto/x509"

	"crypto/md5"
	"crypto/tls"
	"fmt"
	"github.com/gatehouse/gatehouse/policy"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"

	"github.com/gatehouse/gatehouse/radius/eap"
	"github.com/gatehouse/gatehouse/radius/radbench"
)

// capConn is a net.PacketConn that keeps the last datagram written.
type capConn struct {
	net.PacketConn
	last []byte
}

func (c *capConn) WriteTo(b []byte, _ net.Addr) (int, error) { c.last = b; return len(b), nil }

func (c *capConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	c.last = b
	return len(b), nil
}

// inproc drives a Server's request path without sockets.
type inproc struct {
	s    *Server
	w    *worker
	conn *capConn
	j    *job
}

func newInproc(tb testing.TB, mod func(*Config)) *inproc {
	p := getPKI(tb)
	cfg := Config{Clients: []ClientConfig{{Name: "lo", Network: "127.0.0.0/8", Secret: testSecret}}}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, newFakeAuth(p), p.serverTLS(), testLogger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	c := &capConn{}
	return &inproc{s: s, w: newWorker(), conn: c, j: &job{conn: c, src: netip.MustParseAddrPort("127.0.0.1:4000")}}
}

// do processes one datagram and returns the reply (nil: dropped).
func (ip *inproc) do(b []byte) []byte {
	ip.conn.last = nil
	ip.j.n = copy(ip.j.buf[:], b)
	ip.s.process(ip.w, ip.j)
	ip.s.decWG.Wait() // a decision answers from its own goroutine
	return ip.conn.last
}

func accessRequest(tb testing.TB, id byte, msg, state []byte) []byte {
	req := layeh.New(layeh.CodeAccessRequest, []byte(testSecret))
	req.Identifier = id
	rfc2865.UserName_SetString(req, "bench")
	radbench.AddEAP(req, msg, state)
	b, err := radbench.EncodeRequest(req)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// authInproc runs one EAP-TLS authentication; the benchmark timer runs only
// while the server works. cpu, when not nil, accumulates the process's CPU
// time (user+system) while the server works.
func authInproc(b *testing.B, ip *inproc, conf *tls.Config, cpu *time.Duration) {
	peer := &eap.Peer{Identity: "bench", TLS: conf}
	defer peer.Close()
	msg := peer.Identify(0)
	var state []byte
	for id := byte(0); ; id++ {
		req := accessRequest(b, id, msg, state)
		b.StartTimer() // stops the world to read memory statistics: not counted in cpu
		var c0 time.Duration
		if cpu != nil {
			c0 = processCPU(b)
		}
		r := ip.do(req)
		if cpu != nil {
			*cpu += processCPU(b) - c0
		}
		b.StopTimer()
		if r == nil {
			b.Fatal("dropped")
		}
		rp, err := layeh.Parse(r, []byte(testSecret))
		if err != nil {
			b.Fatal(err)
		}
		if rp.Code != layeh.CodeAccessChallenge {
			if rp.Code != layeh.CodeAccessAccept {
				b.Fatalf("reply %v", rp.Code)
			}
			return
		}
		state = rfc2865.State_Get(rp)
		var done bool
		msg, done, err = peer.Handle(eapOf(rp))
		if done || err != nil {
			b.Fatal(err)
		}
	}
}

// processCPU is the process's user+system CPU time so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEAPTLSAuth measures the server's work for one whole EAP-TLS
// authentication (ECDSA P-256 certificates), RADIUS decoding and encoding
// included; the supplicant's work is excluded from the timing.
func BenchmarkEAPTLSAuth(b *testing.B) {
	for _, v := range []struct {
		name     string
		max      uint16
		noVerify bool
	}{
		{"tls12", tls.VersionTLS12, false},
		{"tls13", tls.VersionTLS13, false},
		// Without the authorizer's chain verification: EAP + RADIUS
		// overhead on top of the bare handshake (eap.BenchmarkBareTLSServer).
		{"tls12-allow-all", tls.VersionTLS12, true},
		{"tls13-allow-all", tls.VersionTLS13, true},
	} {
		b.Run(v.name, func(b *testing.B) {
			ip := newInproc(b, nil)
			if v.noVerify {
				ip.s.auth = allowAll{}
			}
			p := getPKI(b)
			conf := p.clientTLS(&p.alice, v.max)
			conf.ClientSessionCache = nil
			b.ReportAllocs()
			b.StopTimer()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				authInproc(b, ip, conf, nil)
			}
		})
	}
}

// BenchmarkStatusServerPath is decode + Message-Authenticator check +
// encode of a reply into a reused buffer: the per-packet codec cost.
func BenchmarkStatusServerPath(b *testing.B) {
	secret := []byte("xyzzy5461")
	req := unhex(b, rfc5997StatusServer)
	h, m := newHMAC(secret), md5.New()
	buf := make([]byte, 0, 64)
	scratch := make([]byte, 0, 16)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p, err := parsePacket(req)
		if err != nil || !p.verifyMA(h, false, scratch) {
			b.Fatal("bad")
		}
		r := newReply(buf, codeAccessAccept, p.id(), p.auth())
		if _, err := r.finish(h, m, secret); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCacheHit is a retransmission answered from the reply cache.
func BenchmarkCacheHit(b *testing.B) {
	ip := newInproc(b, nil)
	req := layeh.New(layeh.CodeStatusServer, []byte(testSecret))
	wire, _ := radbench.EncodeRequest(req)
	if ip.do(wire) == nil {
		b.Fatal("no reply")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if ip.do(wire) == nil {
			b.Fatal("no reply")
		}
	}
}

// BenchmarkGarbage is the cost of dropping junk: malformed, from an
// unknown client, and with a bad Message-Authenticator.
func BenchmarkGarbage(b *testing.B) {
	ip := newInproc(b, nil)
	good := accessRequest(b, 1, eap.AppendIdentity(nil, 1, "x"), nil)
	badMA := append([]byte(nil), good...)
	badMA[25] ^= 0xff
	for _, tc := range []struct {
		name string
		b    []byte
		src  string
	}{
		{"malformed", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "127.0.0.1:4000"},
		{"unknown_client", good, "192.0.2.1:4000"},
		{"bad_message_authenticator", badMA, "127.0.0.1:4000"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ip.j.src = netip.MustParseAddrPort(tc.src)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if ip.do(tc.b) != nil {
					b.Fatal("answered garbage")
				}
			}
		})
	}
}

// BenchmarkHalfOpen measures memory per conversation that sent its
// Identity and got the EAP-TLS Start, never more (the flood case), and
// checks that such conversations start no goroutine. "B/conv" is the
// conversation alone (reply cache disabled); "B/conv+cache" adds the
// reply-cache entry each request leaves for 10 s (the cache holds at most
// 32768 entries).
func BenchmarkHalfOpen(b *testing.B) {
	const n = 50000
	reqs := make([][]byte, n)
	for k := range reqs {
		reqs[k] = accessRequest(b, byte(k), eap.AppendIdentity(nil, 1, fmt.Sprintf("user%05d@example.com", k)), nil)
	}
	measure := func(withCache bool) float64 {
		ip := newInproc(b, func(c *Config) { c.MaxSessions, c.MaxHalfOpenPerClient = 65536, 65536 })
		if !withCache {
			ip.s.cache = newReplyCache(1, time.Nanosecond)
		}
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		g0 := runtime.NumGoroutine()
		for k := range reqs {
			ip.j.src = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(1000+k))
			if ip.do(reqs[k]) == nil {
				b.Fatal("dropped")
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		if live := ip.s.sessions.len(); live != n {
			b.Fatalf("%d sessions live", live)
		}
		if g := runtime.NumGoroutine(); g > g0 {
			b.Fatalf("half-open conversations started %d goroutines", g-g0)
		}
		runtime.KeepAlive(ip)
		return float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / n
	}
	for i := 0; i < b.N; i++ {
		b.ReportMetric(measure(false), "B/conv")
		b.ReportMetric(measure(true), "B/conv+cache")
	}
}

// eapOf concatenates a packet's EAP-Message attributes.
func eapOf(p *layeh.Packet) []byte {
	var m []byte
	for _, a := range p.Attributes {
		if a.Type == 79 {
			m = append(m, a.Attribute...)
		}
	}
	return m
}

type allowAll struct{}

func (allowAll) Authorize(_ context.Context, chain []*x509.Certificate) policy.Decision {
	return policy.Decision{Allowed: true, Identity: policy.Identity{Name: chain[0].Subject.CommonName}, WiFi: policy.WiFi{Permitted: true, VLAN: "10"}}
}

// BenchmarkStatusServerUDP is Status-Server over real UDP on 127.0.0.1
// against a running server, many clients in parallel: see the req/s metric.
func BenchmarkStatusServerUDP(b *testing.B) {
	s := startServer(b, nil)
	b.ReportAllocs()
	b.SetParallelism(8)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := net.Dial("udp", s.Addr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		buf := make([]byte, 4096)
		for pb.Next() {
			req := layeh.New(layeh.CodeStatusServer, []byte(testSecret))
			wire, _ := radbench.EncodeRequest(req)
			conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := conn.Write(wire); err != nil {
				b.Error(err)
				return
			}
			if _, err := conn.Read(buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}
