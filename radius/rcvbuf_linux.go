//go:build linux

package radius

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// setReceiveBuffer sets a UDP socket's receive buffer to n bytes: with
// SO_RCVBUFFORCE where permitted (root, CAP_NET_ADMIN), which may exceed
// net.core.rmem_max, else SO_RCVBUF (capped by it). It returns the size granted
// (half of what the kernel reports: Linux doubles the request for its
// bookkeeping) and the socket's descriptor, for receivePressure.
func setReceiveBuffer(c *net.UDPConn, n int) (effective, fd int, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, -1, err
	}
	var serr error
	cerr := rc.Control(func(d uintptr) {
		fd = int(d)
		if n > 0 {
			if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) != nil {
				serr = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n)
			}
		}
		effective, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
		effective /= 2
	})
	if cerr != nil {
		return 0, -1, cerr
	}
	if serr != nil {
		return effective, fd, serr
	}
	return effective, fd, err
}

// receivePressure reports whether the socket's receive buffer is more than
// half full (SO_MEMINFO). fd < 0 or an error: false. It allocates nothing.
func receivePressure(fd int) bool {
	if fd < 0 {
		return false
	}
	var mi [unix.SK_MEMINFO_VARS]uint32
	l := uint32(unsafe.Sizeof(mi))
	_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mi)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return false
	}
	return 2*uint64(mi[unix.SK_MEMINFO_RMEM_ALLOC]) > uint64(mi[unix.SK_MEMINFO_RCVBUF])
}

// socketDrops is the number of datagrams the kernel dropped because the
// socket's receive buffer was full (SO_MEMINFO).
func socketDrops(fd int) uint64 {
	if fd < 0 {
		return 0
	}
	var mi [unix.SK_MEMINFO_VARS]uint32
	l := uint32(unsafe.Sizeof(mi))
	_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mi)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 || l <= unix.SK_MEMINFO_DROPS*4 {
		return 0
	}
	return uint64(mi[unix.SK_MEMINFO_DROPS])
}
