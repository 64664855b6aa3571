// Package netlimit caps how many connections a TCP listener holds open, in
// total and per source address, so that a flood of idle connections cannot
// use up the process's file descriptors (after which metrics, reloads and
// every other listener fail too).
//
// A connection over a cap is accepted and closed at once: the kernel's
// accept backlog keeps draining, so clients under their caps are still
// served, and the refusal is counted. Standard library only.
package netlimit

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Config sets the caps. Zero means no cap.
type Config struct {
	// MaxConns caps the connections open at once through the listener.
	MaxConns int
	// MaxConnsPerIP caps the connections open at once from one source:
	// one IPv4 address, or one IPv6 /64 (what one host or site usually
	// holds, so an attacker cannot dodge the cap by rotating addresses
	// inside its prefix).
	MaxConnsPerIP int
}

// WithDefaults returns c with each zero cap taken from def and each
// negative cap (an explicit "no cap") made zero: the convention of the
// config keys built on this package (0 = default, negative = unlimited).
func (c Config) WithDefaults(def Config) Config {
	pick := func(v, d int) int {
		switch {
		case v == 0:
			return d
		case v < 0:
			return 0
		}
		return v
	}
	return Config{MaxConns: pick(c.MaxConns, def.MaxConns), MaxConnsPerIP: pick(c.MaxConnsPerIP, def.MaxConnsPerIP)}
}

// Stats is a snapshot of a Listener's counters.
type Stats struct {
	Open     int    // accepted connections open now
	Rejected uint64 // connections closed at accept for being over a cap
}

// Listener wraps a net.Listener with Config's caps. Its Accept returns only
// connections within the caps; each returned connection frees its place
// when closed (once, whoever closes it).
type Listener struct {
	net.Listener
	cfg      Config
	rejected atomic.Uint64

	mu sync.Mutex
	// guarded by mu
	open  int
	bySrc map[netip.Prefix]int
}

// Wrap returns ln with cfg's caps.
func Wrap(ln net.Listener, cfg Config) *Listener {
	return &Listener{Listener: ln, cfg: cfg, bySrc: make(map[netip.Prefix]int)}
}

// Accept waits for the next connection within the caps; connections over a
// cap are closed and counted (Rejected) without being returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := source(c.RemoteAddr())
		if !l.acquire(src) {
			l.rejected.Add(1)
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // reset: free the socket now, no TIME_WAIT
			}
			c.Close()
			continue
		}
		return &conn{Conn: c, l: l, src: src}, nil
	}
}

// Rejected is how many connections were closed for being over a cap.
func (l *Listener) Rejected() uint64 { return l.rejected.Load() }

// Open is how many accepted connections are open now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Stats returns l's counters; a nil Listener (not listening yet) has none.
func (l *Listener) Stats() Stats {
	if l == nil {
		return Stats{}
	}
	return Stats{Open: l.Open(), Rejected: l.Rejected()}
}

func (l *Listener) acquire(src netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.MaxConns > 0 && l.open >= l.cfg.MaxConns {
		return false
	}
	if l.cfg.MaxConnsPerIP > 0 && src.IsValid() && l.bySrc[src] >= l.cfg.MaxConnsPerIP {
		return false
	}
	l.open++
	if src.IsValid() {
		l.bySrc[src]++
	}
	return true
}

func (l *Listener) release(src netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if !src.IsValid() {
		return
	}
	if n := l.bySrc[src] - 1; n > 0 {
		l.bySrc[src] = n
	} else {
		delete(l.bySrc, src)
	}
}

// source is the per-IP key of a remote address: the IPv4 address (IPv4-
// mapped IPv6 included) or the IPv6 /64. Invalid for non-IP addresses
// (those only count toward MaxConns).
func source(a net.Addr) netip.Prefix {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			ip = ap.Addr()
		}
	}
	ip = ip.Unmap().WithZone("")
	switch {
	case !ip.IsValid():
		return netip.Prefix{}
	case ip.Is4():
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// conn frees its place in the listener on the first Close.
type conn struct {
	net.Conn
	l    *Listener
	src  netip.Prefix
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.src) })
	return err
}
