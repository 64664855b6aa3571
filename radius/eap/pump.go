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
//
// A driver that need not wait (start with a continuation, stepAsync)
// hands the goroutine a continuation with its input instead: the goroutine calls it
// itself when TLS blocks for more input or returns, and no other goroutine
// is woken for the step.
type pump struct {
	conn  *memConn
	tls   *tls.Conn
	done  chan struct{} // closed when fn returned; err is then set
	err   error
	timer *time.Timer // wait's, reused step after step; only the driver touches it
	watch *time.Timer // closes the conversation when an asynchronous step overruns
}

// then is a continuation: the output TLS wrote during the step, whether fn
// returned (err is its result).
type then func(out []byte, finished bool, err error)

// startPump starts fn on a fresh memConn preloaded with first, with a
// driver that waits (step, wait). wg, if not nil, tracks the goroutine.
func startPump(first []byte, mk func(net.Conn) *tls.Conn, fn func(*tls.Conn) error, wg *sync.WaitGroup) *pump {
	p := newPump(first, mk)
	p.start(fn, wg, nil, 0)
	return p
}

// newPump prepares a conversation; start runs it.
func newPump(first []byte, mk func(net.Conn) *tls.Conn) *pump {
	c := &memConn{
		feed:    make(chan feedMsg),
		blocked: make(chan struct{}),
		closed:  make(chan struct{}),
	}
	c.in = append([]byte(nil), first...)
	return &pump{conn: c, tls: mk(c), done: make(chan struct{})}
}

// start runs fn on its own goroutine. wg, if not nil, tracks it. With k
// set the first step is asynchronous (see stepAsync), bounded by timeout.
func (p *pump) start(fn func(*tls.Conn) error, wg *sync.WaitGroup, k then, timeout time.Duration) {
	c := p.conn
	if k != nil {
		c.then = p.watched(k, timeout)
	}
	if wg != nil {
		wg.Add(1)
	}
	go func() {
		if wg != nil {
			defer wg.Done()
		}
		growStack()
		p.err = fn(p.tls)
		k := c.then // only this goroutine touches it
		c.then = nil
		close(p.done)
		if k != nil {
			k(c.takeOut(), true, p.err)
		}
	}()
}

// watched arms the step timer and returns k disarming it first. The
// driver arms it before the goroutine learns of k.
func (p *pump) watched(k then, timeout time.Duration) then {
	if p.watch == nil {
		p.watch = time.AfterFunc(timeout, p.close)
	} else {
		p.watch.Reset(timeout)
	}
	w := p.watch
	return func(out []byte, finished bool, err error) {
		w.Stop()
		k(out, finished, err)
	}
}

// stepAsync gives data to the blocked goroutine with k, which that
// goroutine calls when TLS blocks again or returns; if it has returned
// already, k runs here at once. A step longer than timeout closes the
// conversation (k then reports the error).
func (p *pump) stepAsync(data []byte, timeout time.Duration, k then) {
	k = p.watched(k, timeout)
	select {
	case p.conn.feed <- feedMsg{data: append([]byte(nil), data...), then: k}:
	case <-p.done:
		k(p.conn.takeOut(), true, p.err)
	}
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
	case p.conn.feed <- feedMsg{data: append([]byte(nil), data...)}:
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
	feed    chan feedMsg
	blocked chan struct{}

	closeOnce sync.Once
	closed    chan struct{}

	in   []byte // only touched by the reading goroutine
	then then   // the asynchronous step's continuation; like in, the reading goroutine's

	mu  sync.Mutex // guards out
	out []byte
}

// feedMsg is a step's input and, if asynchronous, its continuation.
type feedMsg struct {
	data []byte
	then then
}

func (c *memConn) Read(b []byte) (int, error) {
	for len(c.in) == 0 {
		select {
		case <-c.closed:
			return 0, net.ErrClosed
		default:
		}
		if k := c.then; k != nil {
			c.then = nil
			k(c.takeOut(), false, nil)
		} else {
			select {
			case c.blocked <- struct{}{}:
			case <-c.closed:
				return 0, net.ErrClosed
			}
		}
		select {
		case m := <-c.feed:
			c.in, c.then = m.data, m.then
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
