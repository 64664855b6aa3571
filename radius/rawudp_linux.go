//go:build linux

package radius

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"unsafe"
)

// The UDP sockets' datagrams are read and sent with raw system calls
// (syscall.RawSyscall6) on the socket's non-blocking descriptor, through
// its syscall.RawConn: the poller still waits for a readable socket and
// the descriptor stays referenced while in use, as with ReadFrom and
// WriteTo. What the raw call leaves out is the runtime's system-call
// bookkeeping, and with it a wake-up: when the process has been idle
// (every P idle), the runtime's monitor thread (sysmon) sleeps, and the
// next ordinary system call wakes it, after which it polls every 20µs
// until the process is idle again. A RADIUS server goes idle between most
// datagrams, so that was one thread wake-up and a few more sleeps per
// datagram: 8% of the CPU of a resumed EAP-TLS login (perf, README
// "Performance"). A non-blocking recvfrom or sendto never blocks, which is the
// rule for raw calls.

// rawUDP reads one UDP socket's datagrams; one per reading goroutine.
type rawUDP struct {
	rc   syscall.RawConn
	read func(fd uintptr) bool // built once: no closure per datagram

	// The read in progress; only the reading goroutine touches them.
	buf   []byte
	n     int
	errno syscall.Errno
	sa    syscall.RawSockaddrInet6 // large enough for either family
}

// newRawUDP prepares raw reads from c; nil if c offers no RawConn.
func newRawUDP(c *net.UDPConn) *rawUDP {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawUDP{rc: rc}
	r.read = func(fd uintptr) bool {
		for {
			l := uint32(unsafe.Sizeof(r.sa))
			n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(r.buf))),
				uintptr(len(r.buf)), 0, uintptr(unsafe.Pointer(&r.sa)), uintptr(unsafe.Pointer(&l)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait for the poller
			}
			r.n, r.errno = int(n), e
			return true
		}
	}
	return r
}

// readFrom is ReadFromUDPAddrPort.
func (r *rawUDP) readFrom(b []byte) (int, netip.AddrPort, error) {
	r.buf = b
	err := r.rc.Read(r.read)
	r.buf = nil
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	if r.errno != 0 {
		return 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Err: r.errno}
	}
	return r.n, sockaddrAddrPort(&r.sa), nil
}

// sockaddrAddrPort decodes a sockaddr_in or sockaddr_in6 as the net
// package does (an IPv4 peer of an IPv6 socket stays 4-in-6).
func sockaddrAddrPort(sa *syscall.RawSockaddrInet6) netip.AddrPort {
	port := netPort(&sa.Port)
	switch sa.Family {
	case syscall.AF_INET:
		sa4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case syscall.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(zoneName(int(sa.Scope_id)))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}

// netPort reads a port in network byte order.
func netPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// setNetPort stores a port in network byte order.
func setNetPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// zoneName is an interface index's name, or the index as a number.
func zoneName(i int) string {
	if ifi, err := net.InterfaceByIndex(i); err == nil {
		return ifi.Name
	}
	return strconv.Itoa(i)
}

// rawSend is one send in progress; pooled with its closure.
type rawSend struct {
	fn    func(fd uintptr) bool
	b     []byte
	sa    syscall.RawSockaddrInet6
	salen uint32
	errno syscall.Errno
}

var rawSends = sync.Pool{New: func() any {
	s := new(rawSend)
	s.fn = func(fd uintptr) bool {
		for {
			_, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(s.b))),
				uintptr(len(s.b)), 0, uintptr(unsafe.Pointer(&s.sa)), uintptr(s.salen))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // send buffer full: wait for the poller
			}
			s.errno = e
			return true
		}
	}
	return s
}}

// rawWriter sends on one UDP socket with raw system calls; safe for
// concurrent use.
type rawWriter struct {
	rc syscall.RawConn
	v6 bool // the socket is AF_INET6
}

// newRawWriter prepares raw sends on c; nil if c offers no RawConn or its
// family is unknown.
func newRawWriter(c *net.UDPConn) *rawWriter {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	var sa syscall.Sockaddr
	if cerr := rc.Control(func(fd uintptr) { sa, err = syscall.Getsockname(int(fd)) }); cerr != nil || err != nil {
		return nil
	}
	switch sa.(type) {
	case *syscall.SockaddrInet4:
		return &rawWriter{rc: rc}
	case *syscall.SockaddrInet6: // the net package's dual-stack sockets too
		return &rawWriter{rc: rc, v6: true}
	}
	return nil
}

// writeTo is WriteToUDPAddrPort.
func (w *rawWriter) writeTo(b []byte, to netip.AddrPort) error {
	s := rawSends.Get().(*rawSend)
	defer rawSends.Put(s)
	s.b, s.errno = b, 0
	a := to.Addr()
	switch {
	case w.v6:
		s.sa = syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Addr: a.As16()}
		setNetPort(&s.sa.Port, to.Port())
		if z := a.Zone(); z != "" {
			if ifi, err := net.InterfaceByName(z); err == nil {
				s.sa.Scope_id = uint32(ifi.Index)
			} else if n, err := strconv.Atoi(z); err == nil {
				s.sa.Scope_id = uint32(n)
			}
		}
		s.salen = syscall.SizeofSockaddrInet6
	case a.Is4() || a.Is4In6():
		sa4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&s.sa))
		*sa4 = syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: a.Unmap().As4()}
		setNetPort(&sa4.Port, to.Port())
		s.salen = syscall.SizeofSockaddrInet4
	default:
		s.b = nil
		return &net.OpError{Op: "write", Net: "udp", Err: syscall.EAFNOSUPPORT}
	}
	err := w.rc.Write(s.fn)
	s.b = nil
	if err != nil {
		return err
	}
	if s.errno != 0 {
		return &net.OpError{Op: "write", Net: "udp", Err: s.errno}
	}
	return nil
}
