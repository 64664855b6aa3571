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
	acct     *acctLog
	tlsWG    sync.WaitGroup // per-session TLS goroutines

	// Decisions (decision.go): one token in decSem per running decision
	// goroutine, all counted by decWG; decCtx is cancelled when shutdown
	// stops waiting for them.
	decSem    chan struct{}
	decWG     sync.WaitGroup
	decCtx    context.Context
	decCancel context.CancelFunc
	auditor   policy.Auditor // nil = none; set before Run

	draining     atomic.Bool // Run's context is done: no new conversations
	drainTimeout time.Duration

	live *liveTable // accepted Wi-Fi sessions (wifisessions.go)

	shared      Shared     // nil: one node (shared.go); set before Run
	sharedRun   *sharedRun // its goroutines, set by Run before any worker starts
	sharedStats sharedCounters
	dynStats    dynCounters // Disconnect/CoA outcomes (coa.go)
	revalMu     sync.Mutex  // serializes Revalidate
	reval       revalState  // re-validation engine and trigger (revalidate.go)

	ready    chan struct{} // closed when listeners are bound (or binding failed)
	mu       sync.Mutex    // guards the fields below
	authAddr net.Addr
	acctAddr net.Addr
	running  bool
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
	acct bool // arrived on the accounting port
}

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
	s.mu.Lock()
	s.authAddr = authConn.LocalAddr()
	if acctConn != nil {
		s.acctAddr = acctConn.LocalAddr()
	}
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("radius: listening", "auth", s.authAddr, "acct", s.acctAddr, "clients", len(s.nas))
	stopShared := s.startShared()

	// Fixed pool of datagram buffers: a reader with no free buffer drops.
	workers := s.set.workers
	nJobs := workers * 9
	free := make(chan *job, nJobs)
	for range nJobs {
		free <- new(job)
	}
	queue := make(chan *job, nJobs)

	var readers, others sync.WaitGroup
	conns := []net.PacketConn{authConn}
	if acctConn != nil {
		conns = append(conns, acctConn)
	}
	for i, c := range conns {
		readers.Add(1)
		go func() {
			defer readers.Done()
			s.read(c, i == 1, free, queue)
		}()
	}
	for range workers {
		others.Add(1)
		go func() {
			defer others.Done()
			w := newWorker()
			for j := range queue {
				s.process(w, j)
				free <- j
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
	for _, c := range conns {
		c.Close()
	}
	readers.Wait()
	close(queue)
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
	s.log.Info("radius: stopped")
	return nil
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

// read receives datagrams until the socket is closed.
func (s *Server) read(c net.PacketConn, acct bool, free, queue chan *job) {
	uc, _ := c.(*net.UDPConn)
	var scratch [maxPacket]byte
	for {
		var j *job
		select {
		case j = <-free:
		default:
		}
		buf := scratch[:]
		if j != nil {
			buf = j.buf[:]
		}
		var n int
		var src netip.AddrPort
		var err error
		if uc != nil {
			n, src, err = uc.ReadFromUDPAddrPort(buf)
		} else {
			var a net.Addr
			n, a, err = c.ReadFrom(buf)
			if ua, ok := a.(*net.UDPAddr); ok {
				src = ua.AddrPort()
			}
		}
		if err != nil {
			if j != nil {
				free <- j
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("radius: read", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if j == nil {
			// No buffer was free when the read began; one may have been
			// freed while the reader waited for this datagram.
			select {
			case j = <-free:
				copy(j.buf[:], buf[:n])
			default:
				s.stats.drops[dOverload].Add(1)
				continue
			}
		}
		j.n, j.src, j.conn, j.acct = n, src, c, acct
		queue <- j // never blocks: queue holds every job
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

func (s *Server) sendTo(c net.PacketConn, to netip.AddrPort, b []byte) {
	var err error
	if uc, ok := c.(addrPortWriter); ok {
		_, err = uc.WriteToUDPAddrPort(b, to)
	} else {
		_, err = c.WriteTo(b, net.UDPAddrFromAddrPort(to))
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Warn("radius: send", "to", to, "err", err)
	}
}
