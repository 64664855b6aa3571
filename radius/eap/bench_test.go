package eap

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"
)

// BenchmarkBareTLSServer is the server side of a plain crypto/tls
// handshake over an in-memory connection, with mutual authentication and
// the same kind of certificates (ECDSA P-256) as BenchmarkConversation and
// radius.BenchmarkEAPTLSAuth: the floor that EAP-TLS overhead is measured
// against. Only the server's steps are timed.
func BenchmarkBareTLSServer(b *testing.B) {
	for _, v := range []struct {
		name string
		max  uint16
	}{{"tls12", tls.VersionTLS12}, {"tls13", tls.VersionTLS13}} {
		b.Run(v.name, func(b *testing.B) {
			p := newPair(b, v.max, true)
			b.ReportAllocs()
			b.StopTimer()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := bareHandshake(b, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func bareHandshake(b *testing.B, p pair) error {
	const to = 10 * time.Second
	cl := startPump(nil, func(c net.Conn) *tls.Conn { return tls.Client(c, p.client) }, peerRunNoCommit, nil)
	defer cl.close()
	out, _, err := cl.wait(to)
	if err != nil {
		return err
	}
	var srv *pump
	defer func() {
		if srv != nil {
			srv.close()
		}
	}()
	for range 10 {
		var sout []byte
		var sdone bool
		b.StartTimer()
		if srv == nil {
			srv = startPump(out, func(c net.Conn) *tls.Conn { return tls.Server(c, p.srv.TLS) }, serverHandshake, nil)
			sout, sdone, err = srv.wait(to)
		} else {
			sout, sdone, err = srv.step(out, to)
		}
		b.StopTimer()
		if err != nil {
			return err
		}
		if sdone && len(sout) == 0 {
			return nil
		}
		var cdone bool
		out, cdone, err = cl.step(sout, to)
		if err != nil {
			return err
		}
		if cdone && len(out) == 0 {
			return nil
		}
	}
	return errors.New("handshake did not finish")
}

func peerRunNoCommit(c *tls.Conn) error { return c.Handshake() }

// BenchmarkConversation is a whole EAP-TLS conversation in memory, both
// sides timed (no RADIUS).
func BenchmarkConversation(b *testing.B) {
	for _, v := range []struct {
		name string
		max  uint16
	}{{"tls12", tls.VersionTLS12}, {"tls13", tls.VersionTLS13}} {
		b.Run(v.name, func(b *testing.B) {
			p := newPair(b, v.max, true)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, _, _, err := converse(b, p, 1020, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
