package eap

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// errStepTimeout is returned when the TLS goroutine neither asks for input nor
// finishes in time.
var errStepTimeout = errors.New("eap: tls step timed out")

// pump runs one TLS conversation in its own goroutine over a memConn and
// lets a driver advance it in lock step: feed the peer's bytes, collect what
// TLS wrote until it blocks for more input or finishes.
type pump struct {
	conn  *memConn
	tls   *tls.Conn
	done  chan struct{} // closed when fn returned; err is then set
	err   error
	timer *time.Timer // wait's, reused step after step; only the driver touches it
}

// startPump starts fn on a fresh memConn preloaded with first. wg, if not
// nil, tracks the goroutine.
func startPump(first []byte, mk func(net.Conn) *tls.Conn, fn func(*tls.Conn) error, wg *sync.WaitGroup) *pump {
	c := &memConn{
		feed:    make(chan []byte),
		blocked: make(chan struct{}),
		closed:  make(chan struct{}),
	}
	c.in = append([]byte(nil), first...)
	p := &pump{conn: c, tls: mk(c), done: make(chan struct{})}
	if wg != nil {
		wg.Add(1)
	}
	go func() {
		if wg != nil {
			defer wg.Done()
		}
		growStack()
		p.err = fn(p.tls)
		close(p.done)
	}()
	return p
}

// wait waits until the goroutine needs input or is done and returns the
// output written so far.
func (p *pump) wait(timeout time.Duration) (out []byte, finished bool, err error) {
	// Since Go 1.23 a stopped or reset timer never delivers a stale
	// expiry, so one timer serves every step.
	if p.timer == nil {
		p.timer = time.NewTimer(timeout)
	} else {
		p.timer.Reset(timeout)
	}
	defer p.timer.Stop()
	select {
	case <-p.conn.blocked:
		return p.conn.takeOut(), false, nil
	case <-p.done:
		return p.conn.takeOut(), true, p.err
	case <-p.timer.C:
		p.close()
		return nil, true, errStepTimeout
	}
}

// step gives data to the blocked goroutine and waits for the next step.
func (p *pump) step(data []byte, timeout time.Duration) ([]byte, bool, error) {
	select {
	case p.conn.feed <- append([]byte(nil), data...):
	case <-p.done:
		return p.conn.takeOut(), true, p.err
	}
	return p.wait(timeout)
}

// close unblocks and ends the goroutine (if still running).
func (p *pump) close() { p.conn.Close() }

// memConn is the in-memory net.Conn under tls.Conn. Reads are served from
// data the driver feeds; when none is left Read tells the driver (blocked)
// and waits. Writes are collected for the driver.
type memConn struct {
	feed    chan []byte
	blocked chan struct{}

	closeOnce sync.Once
	closed    chan struct{}

	in []byte // only touched by the reading goroutine

	mu  sync.Mutex // guards out
	out []byte
}

func (c *memConn) Read(b []byte) (int, error) {
	for len(c.in) == 0 {
		select {
		case c.blocked <- struct{}{}:
		case <-c.closed:
			return 0, net.ErrClosed
		}
		select {
		case d := <-c.feed:
			c.in = d
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
	n := copy(b, c.in)
	c.in = c.in[n:]
	return n, nil
}

func (c *memConn) Write(b []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, io.ErrClosedPipe
	default:
	}
	c.mu.Lock()
	c.out = append(c.out, b...)
	c.mu.Unlock()
	return len(b), nil
}

func (c *memConn) takeOut() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.out
	c.out = nil
	return o
}

func (c *memConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *memConn) LocalAddr() net.Addr                { return memAddr{} }
func (c *memConn) RemoteAddr() net.Addr               { return memAddr{} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

type memAddr struct{}

func (memAddr) Network() string { return "eap" }
func (memAddr) String() string  { return "eap" }
