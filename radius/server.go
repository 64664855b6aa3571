package radius

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/radius/eap"
)

// Authorizer decides about a client's certificate chain (leaf first).
// *policy.Authorizer satisfies it.
type Authorizer interface {
	Authorize(ctx context.Context, chain []*x509.Certificate) policy.Decision
}

var _ Authorizer = (*policy.Authorizer)(nil)

// Server is a RADIUS authentication and accounting server.
type Server struct {
	// AuthConn and AcctConn, when set before Run, are used instead of
	// binding Listen and AccountingListen (tests, socket activation).
	// Run closes them when it returns.
	AuthConn, AcctConn net.PacketConn

	set      *settings
	auth     Authorizer
	log      *slog.Logger
	nas      nasTable
	eapCfg   eap.ServerConfig
	cache    *replyCache
	sessions *sessionTable
	stats    counters
	// unattributed rate-limits drop log lines of sources that match no
	// client (droplog.go).
	unattributed [numDrops]rateGate
	clock        atomic.Int64 // unix nanoseconds, set every second by the janitor
	acct         *acctLog
	tlsWG        sync.WaitGroup // per-session TLS goroutines

	// Decisions (decision.go): one token in decSem per running decision
	// goroutine, all counted by decWG; decCtx is cancelled when shutdown
	// stops waiting for them.
	decSem    chan struct{}
	decWG     sync.WaitGroup
	decCtx    context.Context
	decCancel context.CancelFunc
	auditor   policy.Auditor // nil = none; set before Run

	draining     atomic.Bool  // Run's context is done: no new conversations
	inFlight     atomic.Int64 // datagrams queued or being processed; drain waits for them
	drainTimeout time.Duration

	fq       *fairQueue  // received datagrams waiting for a worker; set by Run
	live     *liveTable  // accepted Wi-Fi sessions (wifisessions.go)
	dynStats dynCounters // Disconnect/CoA outcomes (coa.go)
	revalMu  sync.Mutex  // serializes Revalidate
	reval    revalState  // re-validation engine and trigger (revalidate.go)

	shared      Shared     // nil: one node (shared.go); set before Run
	sharedRun   *sharedRun // its goroutines, set by Run before any worker starts
	sharedStats sharedCounters

	rs *radsecServer // RadSec listener (radsec.go); nil when off

	// writers send on the UDP sockets with raw system calls
	// (rawudp_linux.go); set by Run before any reader starts, then only
	// read. A socket without one is written with WriteTo.
	writers [2]connWriter

	ready    chan struct{} // closed when listeners are bound (or binding failed)
	mu       sync.Mutex    // guards the fields below
	authAddr net.Addr
	acctAddr net.Addr
	running  bool
	fds      []int // descriptors of the bound sockets, for socketDrops; nil after Run
	// radsecAddr is the RadSec listener's address.
	radsecAddr net.Addr
}

// Reply cache sizing (RFC 5080 suggests a few seconds; NASes retransmit
// every 3-5 s).
const (
	cacheTTL     = 10 * time.Second
	cacheEntries = 32768
)

// New validates cfg and returns a server. It starts nothing. tlsConf is the
// TLS server configuration (from policy.Authorizer.ServerTLS); it should
// request a client certificate. Its maximum version is capped by
// cfg.TLSMaxVersion. A nil logger discards.
func New(cfg Config, auth Authorizer, tlsConf *tls.Config, logger *slog.Logger) (*Server, error) {
	set, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	if auth == nil {
		return nil, errors.New("radius: nil Authorizer")
	}
	if tlsConf == nil {
		return nil, errors.New("radius: nil TLS config")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		set:      set,
		auth:     auth,
		log:      logger,
		nas:      newNASTable(set.clients),
		cache:    newReplyCache(cacheEntries, cacheTTL),
		sessions: newSessionTable(set.maxSessions, set.idle, set.total),
		live:     newLiveTable(set.dyn.maxSessions),
		ready:    make(chan struct{}),
		decSem:   make(chan struct{}, set.maxDecisions),

		drainTimeout: DrainTimeout,
	}
	s.sessions.budget = set.maxSessionBytes
	s.sessions.halfOpenMax = set.halfOpenMax
	s.rs = newRadSecServer(s, set.radsec, tlsConf, len(s.nas))
	s.sessions.clients = make([]clientList, len(s.nas)+s.rs.numClients())
	s.decCtx, s.decCancel = context.WithCancel(context.Background())
	tickets, err := cfg.ticketCache()
	if err != nil {
		return nil, err
	}
	s.eapCfg = eap.ServerConfig{TLS: capTLS(tlsConf, set.tlsMax), WaitGroup: &s.tlsWG, Tickets: tickets}
	return s, nil
}

// MaxTLSVersion returns the tls.Version* value for TLSMaxVersion, for
// policy.Authorizer.ServerTLS.
func (cfg *Config) MaxTLSVersion() (uint16, error) {
	set := settings{}
	switch cfg.TLSMaxVersion {
	case "", "1.3":
		set.tlsMax = tls.VersionTLS13
	case "1.2":
		set.tlsMax = tls.VersionTLS12
	default:
		return 0, fmt.Errorf("radius: tls_max_version %q: want \"1.2\" or \"1.3\"", cfg.TLSMaxVersion)
	}
	return set.tlsMax, nil
}

// capTLS clones c and caps its maximum version, also on configurations
// returned by GetConfigForClient.
func capTLS(c *tls.Config, max uint16) *tls.Config {
	c = c.Clone()
	if c.MaxVersion == 0 || c.MaxVersion > max {
		c.MaxVersion = max
	}
	if get := c.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			cc, err := get(hi)
			if err != nil || cc == nil {
				return cc, err
			}
			if cc.MaxVersion == 0 || cc.MaxVersion > max {
				cc = cc.Clone()
				cc.MaxVersion = max
			}
			return cc, nil
		}
	}
	return c
}

// Addr waits until Run has bound the authentication socket and returns its
// address (nil if binding failed). It blocks until Run is called.
func (s *Server) Addr() net.Addr {
	<-s.ready
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authAddr
}

// AcctAddr is Addr for the accounting socket (nil when accounting is off).
func (s *Server) AcctAddr() net.Addr {
	<-s.ready
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acctAddr
}

// job is one received datagram on its way to a worker.
type job struct {
	buf  [maxPacket]byte
	n    int
	src  netip.AddrPort
	conn net.PacketConn
	acct bool   // arrived on the accounting port
	nas  *nas   // the client src matched (set by the reader; nil: look up)
	flow int32  // fair-queue flow of src
	cid  uint64 // RadSec connection (conn is its reply sink); 0 for UDP
	next *job   // in the flow's FIFO; guarded by fairQueue.mu
}

// Receive queue sizing: the server holds max(minJobs, jobsPerWorker ×
// Workers) datagram buffers; one source may have perFlowJobs of them
// queued.
const (
	minJobs       = 1024
	jobsPerWorker = 64
	perFlowJobs   = 128
)

// Run binds the listeners and serves until ctx is done. It returns after
// every goroutine it started has exited.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("radius: Run called twice")
	}
	s.running = true
	s.mu.Unlock()

	authConn, acctConn, err := s.bind()
	if err != nil {
		close(s.ready)
		return err
	}
	if s.set.acctMode != AccountingFile && s.shared == nil {
		err = fmt.Errorf("radius: accounting = %q needs a shared store ([store] backend = \"postgres\")", s.set.acctMode)
	}
	var acctShared Shared
	acctFile := s.set.acctFile
	switch s.set.acctMode {
	case AccountingStore:
		acctShared, acctFile = s.shared, ""
	case AccountingBoth:
		acctShared = s.shared
	}
	if err == nil && (acctFile != "" || acctShared != nil) {
		s.acct, err = openAcctLog(acctFile, acctShared, s.log)
	}
	if err != nil {
		authConn.Close()
		if acctConn != nil {
			acctConn.Close()
		}
		close(s.ready)
		return err
	}
	var radsecAddr net.Addr
	if s.rs != nil {
		if radsecAddr, err = s.rs.listen(); err != nil {
			authConn.Close()
			if acctConn != nil {
				acctConn.Close()
			}
			if s.acct != nil {
				s.acct.close()
			}
			close(s.ready)
			return err
		}
	}
	conns := []net.PacketConn{authConn}
	if acctConn != nil {
		conns = append(conns, acctConn)
	}
	// The receive buffers are sized before anyone learns the address.
	fds := make([]int, len(conns))
	for i, c := range conns {
		fds[i] = s.receiveBuffer(c, i == 1)
		if uc, ok := c.(*net.UDPConn); ok {
			s.writers[i] = connWriter{c, newRawWriter(uc)}
		}
	}
	s.mu.Lock()
	s.authAddr = authConn.LocalAddr()
	if acctConn != nil {
		s.acctAddr = acctConn.LocalAddr()
	}
	s.fds = fds
	s.radsecAddr = radsecAddr
	s.mu.Unlock()
	s.tickClock(time.Now())
	close(s.ready)
	s.log.Info("radius: listening", "auth", addrString(s.authAddr), "acct", addrString(s.acctAddr), "radsec", addrString(radsecAddr), "clients", len(s.nas), "radsec_clients", s.rs.numClients())
	stopShared := s.startShared()

	// Fixed pool of datagram buffers: a reader without a free buffer
	// leaves datagrams in the socket's receive buffer (fq.go).
	workers := s.set.workers
	nJobs := max(minJobs, jobsPerWorker*workers)
	free := make(chan *job, nJobs)
	for range nJobs {
		free <- new(job)
	}
	s.fq = newFairQueue(perFlowJobs, max(2, workers/4))
	stop := make(chan struct{})

	var readers, others sync.WaitGroup
	for i, c := range conns {
		fd := fds[i]
		readers.Add(1)
		go func() {
			defer readers.Done()
			s.read(c, fd, i == 1, free, stop)
		}()
	}
	if s.rs != nil {
		s.rs.start(free, stop)
	}
	for range workers {
		others.Add(1)
		go func() {
			defer others.Done()
			w := newWorker()
			for j := s.fq.next(-1); j != nil; {
				s.process(w, j)
				s.inFlight.Add(-1)
				f := j.flow
				free <- j // a reader may reuse j from now on
				j = s.fq.next(f)
			}
		}()
	}
	others.Add(1)
	go func() {
		defer others.Done()
		s.liveLoop(ctx)
	}()
	janitorDone := make(chan struct{})
	others.Add(1)
	go func() {
		defer others.Done()
		s.janitor(janitorDone)
	}()

	<-ctx.Done()
	s.drain()
	// Decisions still waiting (on a directory, say) are cancelled; their
	// Rejects get a moment to go out before the sockets close.
	s.decCancel()
	s.waitDecisions(time.Now().Add(time.Second))
	close(stop)
	s.mu.Lock()
	s.fds = nil
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	readers.Wait()
	if s.rs != nil {
		s.rs.stopReading() // connections stay open for the replies still coming
	}
	s.fq.close()
	close(janitorDone)
	others.Wait()
	s.decWG.Wait() // no worker is left to start one
	for _, ss := range s.sessions.drain() {
		closeSession(ss)
	}
	s.tlsWG.Wait()
	if s.acct != nil {
		if err := s.acct.close(); err != nil {
			s.log.Error("radius: accounting file", "err", err)
		}
	}
	stopShared() // after the committer: its last records link sessions
	if s.rs != nil {
		s.rs.closeAll() // after the last replies were queued
	}
	s.log.Info("radius: stopped")
	return nil
}

// receiveBuffer applies Config.ReceiveBuffer to a UDP socket and logs the
// size the kernel granted; it returns the descriptor for receivePressure
// (-1 when c is not a UDP socket).
func (s *Server) receiveBuffer(c net.PacketConn, acct bool) (fd int) {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return -1
	}
	port := "auth"
	if acct {
		port = "acct"
	}
	eff, fd, err := setReceiveBuffer(uc, s.set.rcvBuf)
	switch {
	case err != nil:
		s.log.Warn("radius: receive_buffer", "socket", port, "want", s.set.rcvBuf, "effective", eff, "err", err)
	case s.set.rcvBuf > 0 && eff > 0 && eff < s.set.rcvBuf:
		// Capped by net.core.rmem_max (not root).
		s.log.Warn("radius: receive buffer capped by the kernel: bursts may be lost; raise net.core.rmem_max or run with CAP_NET_ADMIN",
			"socket", port, "want", s.set.rcvBuf, "effective", eff)
	default:
		s.log.Info("radius: receive buffer", "socket", port, "bytes", eff)
	}
	return fd
}

func (s *Server) bind() (auth, acct net.PacketConn, err error) {
	auth = s.AuthConn
	if auth == nil {
		if auth, err = net.ListenPacket("udp", s.set.listen); err != nil {
			return nil, nil, fmt.Errorf("radius: listen: %w", err)
		}
	}
	acct = s.AcctConn
	if acct == nil && s.set.acctListen != "off" {
		if acct, err = net.ListenPacket("udp", s.set.acctListen); err != nil {
			auth.Close()
			return nil, nil, fmt.Errorf("radius: accounting_listen: %w", err)
		}
	}
	return auth, acct, nil
}

// read receives datagrams until the socket is closed. It reads only into
// a free buffer and queues every datagram it reads, except those of an
// unknown source (dropped at once) and those of a source whose flow is full
// while the socket's receive buffer is filling up (fq.go).
func (s *Server) read(c net.PacketConn, fd int, acct bool, free chan *job, stop chan struct{}) {
	uc, _ := c.(*net.UDPConn)
	var raw *rawUDP
	if uc != nil {
		raw = newRawUDP(uc)
	}
	room := make(chan struct{}, 1)
	tick := time.NewTicker(time.Millisecond) // rechecks a reader waiting for room
	defer tick.Stop()
	var j *job
	for {
		if j == nil {
			select {
			case j = <-free:
			case <-stop:
				return
			}
		}
		var n int
		var src netip.AddrPort
		var err error
		switch {
		case raw != nil:
			n, src, err = raw.readFrom(j.buf[:])
		case uc != nil:
			n, src, err = uc.ReadFromUDPAddrPort(j.buf[:])
		default:
			var a net.Addr
			n, a, err = c.ReadFrom(j.buf[:])
			if ua, ok := a.(*net.UDPAddr); ok {
				src = ua.AddrPort()
			}
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				free <- j
				return
			}
			s.log.Warn("radius: read", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		nas := s.nas.lookup(src.Addr())
		if nas == nil {
			s.dropLog(nil, src, dUnknownClient)
			continue // j is reused
		}
		j.n, j.src, j.conn, j.acct, j.nas = n, src, c, acct, nas
		j.flow = s.fq.flowOf(src)
		for waited := false; ; waited = true {
			s.inFlight.Add(1)
			if s.fq.push(j) {
				j = nil
				break
			}
			s.inFlight.Add(-1)
			if !waited && !s.fq.mayWait(j.flow, time.Now()) || receivePressure(fd) || isClosed(stop) {
				s.dropLog(nas, src, dOverload)
				break // j is reused
			}
			s.fq.waitRoom(j.flow, room, tick.C)
		}
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (s *Server) janitor(done chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			s.tickClock(now)
			for _, ss := range s.sessions.expire(now) {
				closeSession(ss)
			}
			s.cache.expire(now)
			if s.acct != nil {
				if err := s.acct.sync(); err != nil {
					s.log.Error("radius: accounting fsync", "err", err)
				}
			}
		}
	}
}

// addrPortWriter is implemented by *net.UDPConn (and test doubles): it
// sends without allocating a net.Addr.
type addrPortWriter interface {
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

func (s *Server) send(j *job, b []byte) { s.sendTo(j.conn, j.src, b) }

// connWriter is a socket and its raw writer (nil: none).
type connWriter struct {
	c net.PacketConn
	w *rawWriter
}

func (s *Server) sendTo(c net.PacketConn, to netip.AddrPort, b []byte) {
	var err error
	var w *rawWriter
	for _, cw := range &s.writers {
		if cw.c == c {
			w = cw.w
		}
	}
	if w != nil {
		err = w.writeTo(b, to)
	} else if uc, ok := c.(addrPortWriter); ok {
		_, err = uc.WriteToUDPAddrPort(b, to)
	} else {
		_, err = c.WriteTo(b, net.UDPAddrFromAddrPort(to))
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Warn("radius: send", "to", to.String(), "err", err)
	}
}
