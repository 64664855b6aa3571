package vpn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/gatehouse/gatehouse/netlimit"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/metric"
	"github.com/gatehouse/gatehouse/policy/reval"
	"github.com/gatehouse/gatehouse/vpn/filter"
)

// Authorizer decides whether a certificate chain may use the VPN.
// *policy.Authorizer satisfies it.
type Authorizer interface {
	Authorize(ctx context.Context, chain []*x509.Certificate) policy.Decision
}

// Server is the VPN concentrator: a WireGuard device behind a packet filter,
// the enrollment API, the peer registry and the re-validation loop.
type Server struct {
	cfg    *settings
	auth   Authorizer
	tls    *tls.Config // the enrollment API's: New's clone, with ticket keys of its own (tlssessions.go)
	log    *slog.Logger
	filter *filter.Filter
	store  *store
	ready  chan struct{}
	// allOnDevice is closed once every live stored peer is on the device
	// (after ready for a large registry: recent.go).
	allOnDevice chan struct{}

	// Set by Run before ready is closed; read-only afterwards.
	tnet       *netstack.Net
	enrollAddr net.Addr
	pubKey     Key

	// netstackExtra are further local addresses of the netstack (tests
	// serve "networks behind the concentrator" on them).
	netstackExtra []netip.Addr
	// noFilter leaves the TUN unfiltered: only for measuring the filter's
	// cost in the throughput test. Never set in production.
	noFilter bool

	enrollLn atomic.Pointer[netlimit.Listener] // the capped enrollment listener, once Run made it

	started  atomic.Bool                    // Run runs once
	stopping atomic.Bool                    // Run's context is done
	auditor  atomic.Pointer[policy.Auditor] // nil = none

	enrollLatency metric.Histogram
	enrolls       [3]atomic.Uint64 // by enroll* outcome
	revalMu       sync.Mutex       // serializes re-validation runs
	engine        *reval.Engine    // re-validation engine and mass-cut guard; set before Run
	trigger       *reval.Trigger   // TriggerRevalidate → Run's loop (coalescing; served by any later run)
	lastReport    atomic.Pointer[reval.Report]
	leader        atomic.Pointer[func() bool] // nil: this node re-validates; else only while it returns true

	mu    sync.Mutex         // guards the device handle and the registry below
	dev   *device.Device     // nil until Run has made it
	peers map[string]*record // by certificate fingerprint
	byKey map[Key]*record
	pool  *pool
}

// New validates cfg and returns a Server; it starts nothing. tlsConf is the
// enrollment API's server configuration; it must ask for a client
// certificate (policy.Authorizer.ServerTLS does): verification is left to
// auth.
func New(cfg Config, auth Authorizer, tlsConf *tls.Config, logger *slog.Logger) (*Server, error) {
	s, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if auth == nil {
		return nil, errors.New("vpn: new: no authorizer")
	}
	if tlsConf == nil {
		return nil, errors.New("vpn: new: no TLS configuration")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pools := []netip.Prefix{s.pool}
	if s.pool6.IsValid() {
		pools = append(pools, s.pool6)
	}
	return &Server{
		cfg:         s,
		auth:        auth,
		tls:         ownTLS(tlsConf),
		log:         logger,
		filter:      filter.New(filter.Config{Pools: pools, MaxFlows: s.MaxFlows}),
		store:       newStore(NewFileStore(filepath.Join(s.StateDir, "peers")), logger),
		ready:       make(chan struct{}),
		allOnDevice: make(chan struct{}),
		engine:      reval.Default(logger),
		trigger:     reval.NewTrigger(),
		peers:       make(map[string]*record),
		byKey:       make(map[Key]*record),
		pool:        newPool(s.pool, s.pool6),
	}, nil
}

// SetRevalidation makes e the re-validation engine (shared with the other
// door, so one confirmation of a held mass cut releases both). Call it
// before Run; without it, New's default engine is used.
func (s *Server) SetRevalidation(e *reval.Engine) {
	if e != nil {
		s.engine = e
	}
}

// Ready is closed once Run has brought the device and the enrollment API up.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// EnrollAddr is the enrollment API's listening address (after Ready).
func (s *Server) EnrollAddr() net.Addr { return s.enrollAddr }

// PublicKey is the server's WireGuard public key (after Ready).
func (s *Server) PublicKey() Key { return s.pubKey }

// Net is the userspace network stack when UseNetstack is set (after Ready).
func (s *Server) Net() *netstack.Net { return s.tnet }

// Filter is the packet filter, for its counters.
func (s *Server) Filter() *filter.Filter { return s.filter }

// Run restores the stored peers, brings up the device and the enrollment
// API, and re-validates peers every RevalidateEvery until ctx is done. It
// returns after every goroutine it started has exited.
func (s *Server) Run(ctx context.Context) error {
	if s.started.Swap(true) {
		return errors.New("vpn: Run called twice")
	}
	priv, err := s.loadKey()
	if err != nil {
		return err
	}
	s.pubKey = priv.Public()
	rest, restAsOf := s.restoreRecentFirst()
	if rest == nil {
		if err := s.restore(); err != nil {
			return err
		}
	}

	tdev, err := s.openTUN()
	if err != nil {
		return err
	}
	dev := s.newDevice(tdev)
	defer dev.Close()
	s.mu.Lock()
	s.dev = dev
	s.mu.Unlock()
	later, err := s.configureDevice(priv)
	if err != nil {
		return err
	}
	if err := dev.Up(); err != nil {
		return fmt.Errorf("vpn: device up: %w", err)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if rest != nil {
		s.restoreRest(ctx, &wg, rest, restAsOf)
	} else {
		s.addLater(ctx, &wg, later)
	}
	s.saveRecentEvery(ctx, &wg, time.Minute)
	defer s.saveRecent()

	if !s.cfg.UseNetstack {
		stop, err := s.serveUAPI(&wg)
		if err != nil {
			return err
		}
		defer stop()
	}

	ln, err := net.Listen("tcp", s.cfg.EnrollListen)
	if err != nil {
		return fmt.Errorf("vpn: enrollment listener: %w", err)
	}
	s.enrollAddr = ln.Addr()
	capped := netlimit.Wrap(ln, s.cfg.enrollCaps)
	s.enrollLn.Store(capped)
	hs := &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	serveErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := hs.Serve(tls.NewListener(capped, s.tls))
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		serveErr <- err
	}()

	wg.Add(1)
	go func() {
		defer wg.Done()
		// Restored peers run on their stored access until re-validated:
		// do it at once.
		s.Revalidate(ctx)
		t := time.NewTicker(s.cfg.revalidate)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.Revalidate(ctx)
			case <-s.trigger.C():
				s.revalidateTriggered(ctx)
			}
		}
	}()

	s.log.Info("vpn: up", "interface", s.cfg.Interface, "listen_port", s.cfg.ListenPort,
		"enroll", s.enrollAddr.String(), "peers", s.peerCount(), "public_key", s.pubKey.String())
	close(s.ready)

	select {
	case <-ctx.Done():
		err = nil
	case err = <-serveErr:
		if err != nil {
			err = fmt.Errorf("vpn: enrollment API: %w", err)
		}
	}
	s.stopping.Store(true)
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	hs.Shutdown(sctx)
	cancel()
	return err
}

func (s *Server) peerCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.peers)
}

// restore loads the registry and compiles every peer into the filter.
func (s *Server) restore() error {
	recs, err := s.store.load(s.pool)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peers = recs
	s.byKey = make(map[Key]*record, len(recs))
	for _, r := range recs {
		s.byKey[r.PublicKey] = r
	}
	s.filter.Update(func(u *filter.Update) {
		for _, r := range recs {
			if r.Suspended == nil {
				u.Set(r.Access, r.addrs()...)
			}
		}
	})
	return nil
}

// configureDevice sets the key and port and adds the stored peers, in one
// UAPI transaction: every live peer of a small registry; of a large one
// the recently active (recent.go), returning the others, which Run adds
// once the device is up.
func (s *Server) configureDevice(priv Key) (later []string, err error) {
	var w uapiWriter
	w.privateKey(priv)
	w.listenPort(s.cfg.ListenPort)
	w.replacePeers()
	s.mu.Lock()
	defer s.mu.Unlock()
	first, later := s.restoreOrder()
	for _, r := range first {
		w.addPeer(r.PublicKey, r.addrs()...)
	}
	if err := s.apply(&w); err != nil {
		return nil, fmt.Errorf("vpn: configure device: %w", err)
	}
	if len(later) > 0 {
		s.log.Info("vpn: recently active peers on the device first; the others follow in the background",
			"first", len(first), "later", len(later))
	}
	return later, nil
}

// apply sends w's text to the device; s.mu must be held. Before Run has made the device (a
// Revalidate call at startup), there is nothing to change: the registry is
// loaded into the device when it is made.
func (s *Server) apply(w *uapiWriter) error {
	if s.dev == nil {
		return nil
	}
	if err := s.dev.IpcSet(w.String()); err != nil {
		return fmt.Errorf("vpn: UAPI set: %w", err)
	}
	return nil
}

// openTUN opens the data plane: a netstack, or a kernel TUN that gets the
// server's tunnel addresses and is brought up.
func (s *Server) openTUN() (tun.Device, error) {
	local := []netip.Addr{s.cfg.gateway}
	if s.cfg.gateway6.IsValid() {
		local = append(local, s.cfg.gateway6)
	}
	if s.cfg.UseNetstack {
		local = append(local, s.netstackExtra...)
		tdev, tnet, err := netstack.CreateNetTUN(local, s.cfg.dns, s.cfg.MTU)
		if err != nil {
			return nil, fmt.Errorf("vpn: netstack: %w", err)
		}
		s.tnet = tnet
		return tdev, nil
	}
	return s.openKernelTUN()
}

// newDevice puts the filter around tdev and starts a wireguard-go device on it.
func (s *Server) newDevice(tdev tun.Device) *device.Device {
	if !s.noFilter {
		tdev = filter.Wrap(tdev, s.filter)
	}
	return device.NewDevice(tdev, conn.NewDefaultBind(), wgLogger(s.log))
}

func wgLogger(l *slog.Logger) *device.Logger {
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			if l.Enabled(context.Background(), slog.LevelDebug) {
				l.Debug("wireguard: " + fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) { l.Error("wireguard: " + fmt.Sprintf(format, args...)) },
	}
}

// Stats is a snapshot of the concentrator's state, for metrics and `status`.
type Stats struct {
	Peers       int               // enrolled certificates (records, suspended included)
	Suspended   int               // peers suspended by re-validation (off the device)
	Quarantined uint64            // stored records quarantined since start (unreadable or conflicting)
	Leases      int               // addresses leased from the pool
	PoolSize    int               // addresses clients can lease
	Flows       int               // entries in the connection tracker
	Drops       map[string]uint64 // packets dropped by the filter, by reason
}

// EnrollListener returns the enrollment API's connection counters (zero
// before Run listens).
func (s *Server) EnrollListener() netlimit.Stats { return s.enrollLn.Load().Stats() }

// Stats returns a snapshot of s.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := Stats{Peers: len(s.peers), Leases: len(s.pool.used), PoolSize: int(s.pool.last() - s.pool.first() + 1)}
	for _, r := range s.peers {
		if r.Suspended != nil {
			st.Suspended++
		}
	}
	st.Quarantined = s.store.quarantined.Load()
	s.mu.Unlock()
	st.Flows = s.filter.Flows()
	st.Drops = s.filter.Drops()
	return st
}

// SetStore makes st the peer registry's backend instead of the FileStore
// in StateDir/peers. Call it before Run.
func (s *Server) SetStore(st Store) {
	if st != nil {
		s.store = newStore(st, s.log)
	}
}
