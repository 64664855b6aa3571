//go:build !linux

package radius

import "net"

// setReceiveBuffer sets a UDP socket's receive buffer (SO_RCVBUF); the
// effective size is not known here.
func setReceiveBuffer(c *net.UDPConn, n int) (effective, fd int, err error) {
	if n > 0 {
		err = c.SetReadBuffer(n)
	}
	return 0, -1, err
}

// receivePressure is not known on this system: never.
func receivePressure(fd int) bool { return false }

// socketDrops is not known on this system.
func socketDrops(fd int) uint64 { return 0 }
