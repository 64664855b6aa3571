package radius

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/netlimit"
)

// RadSec (RADIUS over TLS, RFC 6614). Access points (or a proxy such as
// radsecproxy) connect over TCP and TLS 1.2 or later and prove who they
// are with a client certificate, verified against the CAs of the
// [[radius.radsec_client]] entries only — never the employee CAs — and
// matched against the entry's names. The RADIUS secret is "radsec".
//
// Each connection has a reader goroutine that frames packets by their
// Length field and feeds them into the same fair queue, workers and
// processing as UDP datagrams; the connection itself (radsecConn) is the
// reply sink: it implements net.PacketConn, so a worker, a decision
// goroutine or the accounting committer answers on it exactly as on a UDP
// socket. Replies are queued to the connection's writer goroutine, so a
// peer that stops reading never blocks a worker (its connection is closed
// when its queue is full). Requests in flight on one connection are bounded
// by the fair queue's per-source limit: when it is full the reader stops
// reading, and TCP pushes back on the peer. A length outside 20..4096
// closes the connection (counted as a framing error and a malformed drop).
//
// The reply cache is keyed per connection (RFC 6614 2.6.2: a
// retransmission on the same connection repeats the Identifier);
// accounting records are de-duplicated per radsec_client across
// connections (acctdedup.go), since a peer resends unacknowledged records
// on its next connection.
// Disconnect- and CoA-Requests for sessions that came over RadSec go over
// the NAS's connection (RFC 6614 2.5, radsec_coa.go).

// RadSec timeouts and bounds.
const (
	radsecHandshakeTimeout = 10 * time.Second
	radsecWriteTimeout     = 10 * time.Second
	radsecOutQueue         = 1024 // replies waiting for the writer, per connection
)

// radsecServer is the RadSec listener and its connections.
type radsecServer struct {
	s       *Server
	set     *radsecSettings
	base    *tls.Config // the RADIUS server TLS config: source of the certificate
	tlsConf *tls.Config
	clients []*radsecClient

	ln       *netlimit.Listener                // radsec_max_conns and radsec_max_conns_per_ip
	lim      atomic.Pointer[netlimit.Listener] // ln, for RadSecStats (any goroutine)
	nextID   atomic.Uint64
	stopping atomic.Bool
	readers  sync.WaitGroup // accept loop and connection readers
	writers  sync.WaitGroup
	gate     rateGate // refusal log lines
	// handshake bounds a TLS handshake (radsecHandshakeTimeout; tests
	// shorten it).
	handshake atomic.Int64 // nanoseconds
	stats     radsecCounters

	mu    sync.Mutex // guards conns
	conns map[uint64]*radsecConn
}

// radsecClient is a compiled [[radius.radsec_client]] entry.
type radsecClient struct {
	set   radsecClientSettings
	nas   *nas
	conns atomic.Int32 // connections open
}

type radsecCounters struct {
	accepted, refused, overLimit, framing, idle, slowPeer atomic.Uint64
}

// RadSecStats counts RadSec connections.
type RadSecStats struct {
	Open         int    // connections open now (handshakes included)
	Accepted     uint64 // handshakes that succeeded and matched a radsec_client
	Refused      uint64 // handshakes that failed: untrusted or unmatched certificate, TLS < 1.2, timeout
	OverLimit    uint64 // closed by radsec_max_conns, radsec_max_conns_per_ip or a client's max_conns
	FramingError uint64 // closed for a Length outside 20..4096 or a truncated packet
	IdleClosed   uint64 // closed by radsec_idle_timeout
	SlowPeer     uint64 // closed because the peer did not read its replies
}

// RadSecStats returns the RadSec counters (zero when RadSec is off).
func (s *Server) RadSecStats() RadSecStats {
	r := s.rs
	if r == nil {
		return RadSecStats{}
	}
	c := &r.stats
	ls := r.lim.Load().Stats() // zero before Run
	return RadSecStats{Open: ls.Open, Accepted: c.accepted.Load(), Refused: c.refused.Load(),
		OverLimit: c.overLimit.Load() + ls.Rejected, FramingError: c.framing.Load(), IdleClosed: c.idle.Load(), SlowPeer: c.slowPeer.Load()}
}

// RadSecEnabled reports whether radsec_listen is set.
func (s *Server) RadSecEnabled() bool { return s.rs != nil }

// RadSecAddr waits until Run has bound its listeners and returns the
// RadSec address (nil when RadSec is off or binding failed).
func (s *Server) RadSecAddr() net.Addr {
	<-s.ready
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.radsecAddr
}

// newRadSecServer returns nil when set is nil (RadSec off). The clients'
// nas entries are numbered from firstIdx on, after the UDP clients.
func newRadSecServer(s *Server, set *radsecSettings, base *tls.Config, firstIdx int) *radsecServer {
	if set == nil {
		return nil
	}
	r := &radsecServer{s: s, set: set, base: base, conns: make(map[uint64]*radsecConn)}
	r.handshake.Store(int64(radsecHandshakeTimeout))
	for i, cs := range set.clients {
		c := &radsecClient{set: cs}
		c.nas = &nas{idx: firstIdx + i, name: cs.name, secret: []byte(radsecSecret), dyn: cs.dyn, radsec: c}
		r.clients = append(r.clients, c)
	}
	r.tlsConf = r.serverTLS()
	return r
}

func (r *radsecServer) numClients() int {
	if r == nil {
		return 0
	}
	return len(r.clients)
}

// serverTLS is the listener's TLS configuration: TLS 1.2 or later, a
// client certificate required and verified against the radsec_client CAs
// (clientAuth EKU), then matched to an entry.
func (r *radsecServer) serverTLS() *tls.Config {
	c := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        r.set.pool,
		VerifyConnection: func(cs tls.ConnectionState) error { _, err := r.match(cs.PeerCertificates); return err },
	}
	if r.set.cert != nil {
		c.Certificates = []tls.Certificate{*r.set.cert}
		return c
	}
	base := r.base
	c.GetCertificate = func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
		b := base
		if b.GetConfigForClient != nil { // policy.Authorizer: the current server certificate
			cc, err := b.GetConfigForClient(hi)
			if err != nil {
				return nil, err
			}
			if cc != nil {
				b = cc
			}
		}
		if b.GetCertificate != nil {
			return b.GetCertificate(hi)
		}
		for i := range b.Certificates {
			if hi.SupportsCertificate(&b.Certificates[i]) == nil {
				return &b.Certificates[i], nil
			}
		}
		if len(b.Certificates) > 0 {
			return &b.Certificates[0], nil
		}
		return nil, errors.New("radius: radsec: no server certificate")
	}
	return c
}

// match finds the first radsec_client entry whose CA issued the chain's
// leaf and one of whose patterns names it.
func (r *radsecServer) match(chain []*x509.Certificate) (*radsecClient, error) {
	if len(chain) == 0 {
		return nil, errors.New("radius: radsec: no client certificate")
	}
	leaf := chain[0]
	inters := x509.NewCertPool()
	for _, c := range chain[1:] {
		inters.AddCert(c)
	}
	for _, c := range r.clients {
		opts := x509.VerifyOptions{Roots: c.set.roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		if _, err := leaf.Verify(opts); err != nil {
			continue
		}
		for i := range c.set.match {
			if c.set.match[i].matches(leaf) {
				return c, nil
			}
		}
	}
	return nil, fmt.Errorf("radius: radsec: no radsec_client admits certificate %q issued by %q", leaf.Subject.String(), leaf.Issuer.String())
}

// listen binds the RadSec listener.
func (r *radsecServer) listen() (net.Addr, error) {
	ln, err := net.Listen("tcp", r.set.listen)
	if err != nil {
		return nil, fmt.Errorf("radius: radsec_listen: %w", err)
	}
	r.ln = netlimit.Wrap(ln, netlimit.Config{MaxConns: r.set.maxConns, MaxConnsPerIP: r.set.perIP})
	r.lim.Store(r.ln)
	return ln.Addr(), nil
}

// start runs the accept loop.
func (r *radsecServer) start(free chan *job, stop chan struct{}) {
	r.readers.Add(1)
	go func() {
		defer r.readers.Done()
		r.acceptLoop(free, stop)
	}()
}

func (r *radsecServer) acceptLoop(free chan *job, stop chan struct{}) {
	for {
		raw, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || r.stopping.Load() {
				return
			}
			r.s.log.Warn("radius: radsec: accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		c := &radsecConn{r: r, id: r.nextID.Add(1), raw: raw, remote: addrPortOf(raw.RemoteAddr()),
			out: make(chan []byte, radsecOutQueue), done: make(chan struct{})}
		c.tc = tls.Server(raw, r.tlsConf)
		r.mu.Lock()
		if r.stopping.Load() {
			r.mu.Unlock()
			raw.Close()
			return
		}
		r.conns[c.id] = c
		r.mu.Unlock()
		r.readers.Add(1)
		go func() {
			defer r.readers.Done()
			c.serve(free, stop)
		}()
	}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// refusedLog logs a refused connection, at most one line per dropLogEvery.
func (r *radsecServer) refusedLog(src, reason string, err error) {
	ok, suppressed := r.gate.allow(time.Now().UnixNano())
	if !ok {
		return
	}
	attrs := []any{"src", src, "reason", reason, "suppressed", suppressed}
	if err != nil {
		attrs = append(attrs, "err", err.Error())
	}
	r.s.log.Warn("radius: radsec: connection refused", attrs...)
}

// stopReading ends the accept loop and every reader; the connections stay
// open so that replies still being made (decisions, accounting commits)
// go out. closeAll closes them.
func (r *radsecServer) stopReading() {
	r.mu.Lock()
	r.stopping.Store(true)
	for _, c := range r.conns {
		c.raw.SetReadDeadline(time.Unix(1, 0))
	}
	r.mu.Unlock()
	r.ln.Close()
	r.readers.Wait()
}

// closeAll closes every connection after its queued replies are written.
func (r *radsecServer) closeAll() {
	r.mu.Lock()
	for _, c := range r.conns {
		c.close()
	}
	r.mu.Unlock()
	r.writers.Wait()
}

// radsecConn is one RadSec connection. It is the reply sink of the
// requests it carried: a net.PacketConn whose writes queue a packet for
// the connection's writer (the address is ignored).
type radsecConn struct {
	r      *radsecServer
	id     uint64
	raw    net.Conn
	tc     *tls.Conn
	remote netip.AddrPort
	client *radsecClient // set after the handshake (under radsecServer.mu)
	nas    *nas
	out    chan []byte   // replies for the writer
	done   chan struct{} // closed by close: the writer flushes and closes
	once   sync.Once

	dynMu sync.Mutex             // guards dyn
	dyn   map[byte]chan<- []byte // Disconnect/CoA-Requests awaiting an answer, by Identifier
}

var _ net.PacketConn = (*radsecConn)(nil)

// serve runs the handshake, then reads requests until the peer leaves,
// idles, sends garbage or the server stops.
func (c *radsecConn) serve(free chan *job, stop chan struct{}) {
	r := c.r
	src := c.remote.String()
	c.raw.SetDeadline(time.Now().Add(time.Duration(r.handshake.Load())))
	if r.stopping.Load() {
		// stopReading may have set its past deadline before the line above
		// replaced it; checked after setting ours, as readLoop does, so a
		// connection accepted just before the stop never holds Run for a
		// whole handshake timeout.
		c.raw.Close()
		c.unregister()
		return
	}
	if err := c.tc.Handshake(); err != nil {
		c.raw.Close()
		c.unregister()
		if !r.stopping.Load() {
			r.stats.refused.Add(1)
			r.refusedLog(src, "TLS handshake failed (untrusted or unmatched client certificate, TLS older than 1.2, or timeout)", err)
		}
		return
	}
	c.raw.SetDeadline(time.Time{})
	cs := c.tc.ConnectionState()
	cl, err := r.match(cs.PeerCertificates)
	if err != nil { // VerifyConnection refused it already
		c.raw.Close()
		c.unregister()
		return
	}
	if int(cl.conns.Add(1)) > cl.set.maxConns {
		cl.conns.Add(-1)
		r.stats.overLimit.Add(1)
		r.refusedLog(src, "max_conns of radsec_client "+cl.set.name+" reached", nil)
		c.tc.Close()
		c.unregister()
		return
	}
	r.mu.Lock() // connFor reads nas
	c.client, c.nas = cl, cl.nas
	r.mu.Unlock()
	r.stats.accepted.Add(1)
	r.s.log.Info("radius: radsec: connected", "client", cl.set.name, "src", src,
		"subject", cs.PeerCertificates[0].Subject.String(), "tls", tlsVersionName(cs.Version))
	r.writers.Add(1)
	go c.writeLoop()
	c.readLoop(free, stop)
}

// unregister forgets a connection that never got a writer.
func (c *radsecConn) unregister() {
	c.r.mu.Lock()
	delete(c.r.conns, c.id)
	c.r.mu.Unlock()
}

func (c *radsecConn) readLoop(free chan *job, stop chan struct{}) {
	r := c.r
	s := r.s
	var buf [maxPacket]byte
	var tick *time.Ticker
	room := make(chan struct{}, 1)
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		c.raw.SetReadDeadline(time.Now().Add(r.set.idle))
		if r.stopping.Load() {
			return // closeAll closes the connection
		}
		n, err := readFrame(c.tc, &buf)
		switch {
		case errors.Is(err, errFrameLength):
			r.stats.framing.Add(1)
			s.dropLog(c.nas, c.remote, dMalformed)
			s.log.Warn("radius: radsec: bad packet length; connection closed", "client", c.client.set.name, "src", c.remote.String(), "length", n)
			c.close()
			return
		case err != nil:
			c.readEnded(err, n > 0)
			return
		}
		if isDynAnswer(buf[0]) {
			c.dynAnswer(bytes.Clone(buf[:n]))
			continue
		}
		var j *job
		select {
		case j = <-free:
		case <-stop:
			return
		}
		j.n = copy(j.buf[:], buf[:n])
		j.src, j.conn, j.acct, j.nas, j.cid = c.remote, c, false, c.nas, c.id
		j.flow = s.fq.flowOf(c.remote)
		// A full flow makes the reader wait (TCP pushes back on the
		// peer): nothing a peer sent over TCP is dropped for overload.
		for !s.fq.push(j) {
			if isClosed(stop) {
				free <- j
				return
			}
			if tick == nil {
				tick = time.NewTicker(10 * time.Millisecond)
			}
			s.fq.waitRoom(j.flow, room, tick.C)
		}
	}
}

var errFrameLength = errors.New("radius: radsec: Length outside 20..4096")

// readFrame reads one packet, framed by its Length field, into buf. On
// errFrameLength n is the bad Length; on another error n > 0 means the
// stream ended inside a packet.
func readFrame(r io.Reader, buf *[maxPacket]byte) (n int, err error) {
	if k, err := io.ReadFull(r, buf[:4]); err != nil {
		return k, err
	}
	n = int(binary.BigEndian.Uint16(buf[2:4]))
	if n < headerLen || n > maxPacket {
		return n, errFrameLength
	}
	if _, err := io.ReadFull(r, buf[4:n]); err != nil {
		return n, err
	}
	return n, nil
}

// readEnded handles a read error: the server stopping (the connection
// stays open for the replies), an idle timeout, the peer leaving.
func (c *radsecConn) readEnded(err error, midPacket bool) {
	r := c.r
	if r.stopping.Load() {
		return
	}
	name := c.client.set.name
	var ne net.Error
	switch {
	case midPacket:
		r.stats.framing.Add(1)
		r.s.log.Warn("radius: radsec: connection ended inside a packet", "client", name, "src", c.remote.String(), "err", err.Error())
	case errors.As(err, &ne) && ne.Timeout():
		r.stats.idle.Add(1)
		r.s.log.Info("radius: radsec: idle connection closed", "client", name, "src", c.remote.String(), "idle", r.set.idle)
	default:
		r.s.log.Info("radius: radsec: disconnected", "client", name, "src", c.remote.String())
	}
	c.close()
}

// writeLoop writes the queued replies; when the connection is closed it
// writes what is still queued (within a short deadline) and closes it.
func (c *radsecConn) writeLoop() {
	r := c.r
	defer r.writers.Done()
	defer func() {
		c.tc.Close()
		c.client.conns.Add(-1)
		r.mu.Lock()
		delete(r.conns, c.id)
		r.mu.Unlock()
		c.failDyn()
	}()
	write := func(b []byte, d time.Duration) bool {
		c.raw.SetWriteDeadline(time.Now().Add(d))
		_, err := c.tc.Write(b)
		return err == nil
	}
	for {
		select {
		case b := <-c.out:
			if !write(b, radsecWriteTimeout) {
				c.close()
				return
			}
		case <-c.done:
			for {
				select {
				case b := <-c.out:
					if !write(b, time.Second) {
						return
					}
				default:
					return
				}
			}
		}
	}
}

// close asks the writer to flush and close the connection.
func (c *radsecConn) close() { c.once.Do(func() { close(c.done) }) }

func (c *radsecConn) closed() bool { return isClosed(c.done) }

// send queues one packet for the writer. A peer whose queue is full is
// not reading: its connection is closed.
func (c *radsecConn) send(b []byte) error {
	if c.closed() {
		return net.ErrClosed
	}
	select {
	case c.out <- b:
		return nil
	default:
		c.r.stats.slowPeer.Add(1)
		c.close()
		return errors.New("radius: radsec: peer does not read its replies; connection closed")
	}
}

// WriteTo queues b on the connection; addr is ignored.
func (c *radsecConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	if err := c.send(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// WriteToUDPAddrPort is WriteTo without a net.Addr (server.go's addrPortWriter).
func (c *radsecConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	return c.WriteTo(b, nil)
}

// ReadFrom is not used: the connection's reader feeds the queue.
func (c *radsecConn) ReadFrom([]byte) (int, net.Addr, error) {
	return 0, nil, errors.New("radius: radsec: ReadFrom not supported")
}

func (c *radsecConn) Close() error                     { c.close(); return nil }
func (c *radsecConn) LocalAddr() net.Addr              { return c.raw.LocalAddr() }
func (c *radsecConn) SetDeadline(time.Time) error      { return nil }
func (c *radsecConn) SetReadDeadline(time.Time) error  { return nil }
func (c *radsecConn) SetWriteDeadline(time.Time) error { return nil }
