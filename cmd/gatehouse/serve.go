package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/radius"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	cfgFile := configFlag(fs)
	l, err := parseAndLoad(fs, args, cfgFile)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, l.cfg.Server)
	if err := os.MkdirAll(l.cfg.Server.StateDir, 0o750); err != nil {
		return fmt.Errorf("serve: state_dir: %w", err)
	}
	s, err := buildServers(l, logger)
	if err != nil {
		return err
	}
	o, err := newOps(&l.cfg.Server, s, stdout, logger)
	if err != nil {
		return err
	}
	rl := newReloader(l, s.auth, logger.With("component", "reload"))
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
			s.vpn.TriggerRevalidate()
		}
		s.radius.TriggerRevalidate()
	}
	ctl := &controlServer{path: filepath.Join(l.cfg.Server.StateDir, controlSocketName), log: logger.With("component", "control"),
		handle: (&controlHandler{s: s, rl: rl, file: l.file}).handle}
	logger.Info("gatehouse starting", "version", version, "config", l.file,
		"radius", l.cfg.Radius.Listen, "vpn", l.cfg.VPN.Enabled, "rules", len(l.policy.Summary().Rules))
	// The directory, the revocation checker and the audit writer outlive
	// the doors: conversations drained at shutdown are still decided and
	// audited.
	doorsDone := make(chan struct{})
	var doors sync.WaitGroup
	doors.Add(2)
	go func() { doors.Wait(); close(doorsDone) }()
	afterDoors := func(run func(context.Context) error) func(context.Context) error {
		return func(ctx context.Context) error { return run(outlive(ctx, doorsDone)) }
	}
	if s.db != nil {
		defer s.db.Close() // after every component has returned
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
		"audit": afterDoors(o.runAudit),
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
	})
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
