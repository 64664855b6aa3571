//go:build !linux

package radius

import (
	"errors"
	"net"
	"net/netip"
)

// Raw UDP system calls are Linux-only (rawudp_linux.go); elsewhere the
// net package's ReadFrom and WriteTo serve.

type rawUDP struct{}

func newRawUDP(*net.UDPConn) *rawUDP { return nil }

func (*rawUDP) readFrom([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, errors.New("radius: raw UDP not supported")
}

type rawWriter struct{}

func newRawWriter(*net.UDPConn) *rawWriter { return nil }

func (*rawWriter) writeTo([]byte, netip.AddrPort) error {
	return errors.New("radius: raw UDP not supported")
}
