//go:build linux

package radius

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
)

// TestRawUDP sends and receives through the raw calls on IPv4 and IPv6
// loopback sockets and checks the source addresses against the net
// package's own, the allocation count, and that a read ends with
// net.ErrClosed when the socket closes.
func TestRawUDP(t *testing.T) {
	for _, network := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(network, func(t *testing.T) {
			srv, err := net.ListenPacket("udp", network)
			if err != nil {
				t.Skip(err)
			}
			defer srv.Close()
			peer, err := net.ListenPacket("udp", network)
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			r, w := newRawUDP(srv.(*net.UDPConn)), newRawWriter(srv.(*net.UDPConn))
			if r == nil || w == nil {
				t.Fatal("no raw reader or writer for a UDP socket")
			}
			peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			buf := make([]byte, 64)
			pbuf := make([]byte, 64)
			msg := []byte("access-request")
			roundTrip := func() {
				if _, err := peer.WriteTo(msg, srv.LocalAddr()); err != nil {
					t.Fatal(err)
				}
				n, src, err := r.readFrom(buf)
				if err != nil || !bytes.Equal(buf[:n], msg) || src != peerAddr {
					t.Fatalf("readFrom: %q from %v, %v; want %q from %v", buf[:n], src, err, msg, peerAddr)
				}
				if err := w.writeTo(buf[:n], src); err != nil {
					t.Fatal(err)
				}
				n, from, err := peer.(*net.UDPConn).ReadFromUDPAddrPort(pbuf)
				if err != nil || !bytes.Equal(pbuf[:n], msg) || from.Port() != srv.LocalAddr().(*net.UDPAddr).AddrPort().Port() {
					t.Fatalf("reply: %q from %v, %v", pbuf[:n], from, err)
				}
			}
			roundTrip()
			if a := testing.AllocsPerRun(100, roundTrip); a > 0 {
				// The peer's side allocates nothing either (AddrPort API).
				t.Errorf("%v allocations per round trip", a)
			}
			done := make(chan error, 1)
			go func() { _, _, err := r.readFrom(buf); done <- err }()
			srv.Close()
			if err := <-done; !errors.Is(err, net.ErrClosed) {
				t.Errorf("read on a closed socket: %v, want net.ErrClosed", err)
			}
			if err := w.writeTo(msg, peerAddr); !errors.Is(err, net.ErrClosed) {
				t.Errorf("write on a closed socket: %v, want net.ErrClosed", err)
			}
		})
	}
}

// TestRawUDPDualStack: a socket bound to a wildcard address (the net
// package makes both dual-stack IPv6 sockets) receives IPv4 datagrams with
// the source ReadFromUDPAddrPort reports, and answers them.
func TestRawUDPDualStack(t *testing.T) {
	for _, addr := range []string{"[::]:0", "0.0.0.0:0"} {
		t.Run(addr, func(t *testing.T) { testRawUDPWildcard(t, addr) })
	}
}

func testRawUDPWildcard(t *testing.T, addr string) {
	srv, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Skip(err)
	}
	defer srv.Close()
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	r, w := newRawUDP(srv.(*net.UDPConn)), newRawWriter(srv.(*net.UDPConn))
	port := srv.LocalAddr().(*net.UDPAddr).Port
	if _, err := peer.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	_, src, err := r.readFrom(buf)
	if _, err := peer.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
		t.Fatal(err)
	}
	_, want, _ := srv.(*net.UDPConn).ReadFromUDPAddrPort(buf)
	if err != nil || src != want {
		t.Fatalf("source %v (%v), want %v", src, err, want)
	}
	for _, to := range []netip.AddrPort{src, netip.AddrPortFrom(src.Addr().Unmap(), src.Port())} {
		if err := w.writeTo([]byte("y"), to); err != nil {
			t.Fatalf("reply to %v: %v", to, err)
		}
		if n, _, err := peer.ReadFrom(buf); err != nil || string(buf[:n]) != "y" {
			t.Fatalf("reply to %v: %q %v", to, buf[:n], err)
		}
	}
}
