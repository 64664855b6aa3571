package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/directory"
	"github.com/gatehouse/gatehouse/radius"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stdout)
	cfgFile := configFlag(fs)
	l, err := parseAndLoad(fs, args, cfgFile)
	var ce *configError
	if errors.As(err, &ce) && !isFDExhausted(err) {
		// Report every error of the file, as check does, not only those
		// of the first stage that failed.
		if _, srv, all := checkConfig(*cfgFile); len(all) > 0 {
			return &configError{strings.Join(all, "\n")}
		} else if srv != nil {
			srv.dir.Close()
		}
	}
	if err != nil {
		return err
	}
	return serve(ctx, l, stdout, stderr, serveOptions{})
}

// serveOptions adjust serve for tests that run it in process; the zero
// value is production.
type serveOptions struct {
	netstack      bool           // the VPN's data plane in userspace: no TUN, no privilege
	hup           chan os.Signal // stands for SIGHUP
	every, settle time.Duration  // reloader timing; 0 = the defaults
	built         func(*servers) // called with the servers before they start
}

func serve(ctx context.Context, l *loaded, stdout, stderr io.Writer, opts serveOptions) error {
	if err := checkNetAdmin(&l.cfg, l.file); err != nil {
		return err
	}
	logger := newLogger(stderr, l.cfg.Server)
	setMemoryLimit(&l.cfg.Radius, logger)
	if err := os.MkdirAll(l.cfg.Server.StateDir, 0o750); err != nil {
		return fmt.Errorf("serve: state_dir: %w", err)
	}
	// What the servers are built from differs from the file (compared at
	// reload) in keys that are no user's: a copy.
	built := *l
	built.cfg.VPN.UseNetstack = opts.netstack
	if l.cfg.Directory.Backend == "file" {
		// The reloader watches the LDIF file instead (below): it reads it
		// once it has settled and re-validates live access after it.
		built.cfg.Directory.Reload = directory.Duration{Duration: -1}
	}
	s, err := buildServers(&built, logger)
	if err != nil {
		return err
	}
	// A VPN key file that is missing while peers are enrolled (or although
	// private_key_file names it), unreadable or malformed: refused before
	// anything starts, as check reports it (vpnkey.go).
	if err := checkVPNKey(l, s); err != nil {
		s.dir.Close()
		if s.db != nil {
			s.db.Close()
		}
		return err
	}
	if s.cores, err = newCores(&l.cfg.Server, logger); err != nil {
		return err
	}
	if opts.built != nil {
		opts.built(s)
	}
	o, err := newOps(&l.cfg.Server, s, stdout, logger)
	if err != nil {
		return err
	}
	sd, err := newSDNotifier(os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		return err
	}
	rl := newReloader(l, s.auth, logger.With("component", "reload"))
	rl.hup = opts.hup
	if opts.every > 0 {
		rl.every = opts.every
	}
	if opts.settle > 0 {
		rl.settle = opts.settle
	}
	// Every reload re-reads the directory (an edited LDIF file is one) and
	// invalidates its cache, so that the re-validation below sees group
	// changes at once.
	if l.cfg.Directory.Backend == "file" {
		rl.watchDirectory(l.cfg.Directory.File)
	}
	rl.refreshDir = s.dir.Reload
	rl.notify = sd
	// A reloaded policy's revocation sources are loaded before it is in force.
	rl.beforeSwap = func(l *loaded) { s.rev.Update(l.policy) }
	// After a policy swap, cached TLS sessions are dropped and live VPN
	// peers and Wi-Fi sessions are judged again under the new policy.
	// SIGHUP also reopens the accounting file, for logrotate.
	rl.onHUP = func() {
		if err := s.radius.ReopenAccounting(); err != nil {
			logger.Error("accounting file not reopened", "err", err)
		}
	}
	// The runs happen on the doors' own loops, not on the reloader's
	// goroutine; triggers that arrive while one is pending coalesce.
	rl.onSwap = func(*loaded) {
		// No TLS resumption crosses a policy or trust change.
		s.radius.ForgetTLSSessions()
		if s.vpn != nil {
			s.vpn.ForgetTLSSessions()
			s.vpn.TriggerRevalidate()
		}
		s.radius.TriggerRevalidate()
	}
	ctl := &controlServer{path: filepath.Join(l.cfg.Server.StateDir, controlSocketName), log: logger.With("component", "control"),
		handle: (&controlHandler{s: s, rl: rl, file: l.file}).handle}
	logger.Info("gatehouse starting", "version", versionString(), "config", l.file,
		"radius", l.cfg.Radius.Listen, "vpn", l.cfg.VPN.Enabled, "rules", len(l.policy.Summary().Rules))
	// The directory, the revocation checker and the audit writer outlive
	// the doors: conversations drained at shutdown are still decided and
	// audited.
	if s.db != nil {
		defer s.db.Close() // after every component has returned
		s.migrateAtStart(ctx, logger)
	}
	doorsDone := make(chan struct{})
	var doors sync.WaitGroup
	doors.Add(2)
	go func() { doors.Wait(); close(doorsDone) }()
	afterDoors := func(run func(context.Context) error) func(context.Context) error {
		return func(ctx context.Context) error { return run(outlive(ctx, doorsDone)) }
	}
	return runAll(ctx, logger, map[string]func(context.Context) error{
		"directory":  afterDoors(s.dir.Run),
		"revocation": afterDoors(s.rev.Run),
		"radius": func(ctx context.Context) error {
			defer doors.Done()
			return s.radius.Run(ctx)
		},
		"reload": rl.Run,
		// Admin commands (gatehouse reload, peers remove) reach the
		// doors through it.
		"control": ctl.Run,
		"vpn": func(ctx context.Context) error {
			defer doors.Done()
			if s.vpn == nil {
				return nil
			}
			return s.vpn.Run(ctx)
		},
		"vpn-store": s.runVPNStore,
		"audit":     afterDoors(o.runAudit),
		// The spool outlives the doors: the last accounting records of a
		// drain are spooled, and replayed now or at the next start.
		"wifistore": afterDoors(func(ctx context.Context) error {
			if s.wifi == nil {
				return nil
			}
			return s.wifi.Run(ctx)
		}),
		"metrics":  func(ctx context.Context) error { return o.runMetrics(ctx, s) },
		"crlwatch": func(ctx context.Context) error { return o.runCRLWatch(ctx, s) },
		"systemd":  func(ctx context.Context) error { return notifyUp(ctx, sd, s, logger) },
		"procs":    runCores(s.cores),
	})
}

// notifyUp tells systemd READY=1 once the RADIUS listeners are bound and
// the VPN is up, and STOPPING=1 when shutdown begins. If a server fails to
// come up, nothing is sent: serve exits and systemd reports the failure.
func notifyUp(ctx context.Context, sd *sdNotifier, s *servers, logger *slog.Logger) error {
	if sd == nil {
		return nil
	}
	bound := make(chan bool, 1)
	go func() { bound <- s.radius.Addr() != nil }() // Addr waits for Run to bind
	select {
	case ok := <-bound:
		if !ok {
			return nil
		}
	case <-ctx.Done():
		return nil
	}
	if s.vpn != nil {
		select {
		case <-s.vpn.Ready():
		case <-ctx.Done():
			return nil
		}
	}
	if err := sd.up(); err != nil {
		logger.Warn("systemd not told the service is ready", "err", err)
	}
	<-ctx.Done()
	if err := sd.notify("STOPPING=1\nSTATUS=draining conversations and writing state"); err != nil {
		logger.Warn("systemd not told the service is stopping", "err", err)
	}
	return nil
}

// runAll runs each component until ctx is done or one fails, then stops the
// others and returns after all have returned. The first failure is returned;
// a component that returns nil early (nothing to do) stops nothing.
func runAll(ctx context.Context, logger *slog.Logger, parts map[string]func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for name, run := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && ctx.Err() == nil {
				logger.Error("component failed; shutting down", "component", name, "err", err)
				once.Do(func() { first = fmt.Errorf("serve: %w", err) })
				cancel()
			}
		}()
	}
	wg.Wait()
	if first == nil {
		logger.Info("gatehouse stopped")
	}
	return first
}

func newLogger(w io.Writer, c serverConfig) *slog.Logger {
	var level slog.Level
	switch c.LogLevel {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// doorsGrace bounds how long the components that serve the doors wait for
// them after shutdown began (radius drains for at most radius.DrainTimeout).
const doorsGrace = radius.DrainTimeout + 5*time.Second

// outlive returns a context that is done once ctx is done and then done
// is closed (or doorsGrace has passed).
func outlive(ctx context.Context, done <-chan struct{}) context.Context {
	c, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		<-ctx.Done()
		select {
		case <-done:
		case <-time.After(doorsGrace):
		}
		cancel()
	}()
	return c
}
