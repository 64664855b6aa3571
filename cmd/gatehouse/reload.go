package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// reloader recompiles the configuration on SIGHUP and when the file's
// content changes, and swaps the policy whole. A file that fails to compile
// is logged and the policy in force stays.
type reloader struct {
	file       string
	auth       *policy.Authorizer
	log        *slog.Logger
	every      time.Duration     // how often the file is polled for changes
	beforeSwap func(*loaded)     // called before a compiled policy is swapped in
	onSwap     func(*loaded)     // called after a successful swap (e.g. VPN re-validation)
	hup        chan os.Signal    // SIGHUP; nil disables signals (tests)
	sum        [sha256.Size]byte // of the file content in force
	reloaded   chan struct{}     // receives after each attempt, for tests; may be nil
}

func newReloader(file string, l0 []byte, auth *policy.Authorizer, log *slog.Logger) *reloader {
	return &reloader{file: file, auth: auth, log: log, every: 2 * time.Second, sum: sha256.Sum256(l0)}
}

// Run blocks until ctx is done.
func (r *reloader) Run(ctx context.Context) error {
	if r.hup == nil {
		r.hup = make(chan os.Signal, 1)
		signal.Notify(r.hup, syscall.SIGHUP)
		defer signal.Stop(r.hup)
	}
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.hup:
			r.log.Info("reload requested by SIGHUP", "file", r.file)
			r.reload(true)
		case <-t.C:
			r.reload(false)
		}
	}
}

// reload recompiles if forced or if the file changed.
func (r *reloader) reload(force bool) {
	b, err := os.ReadFile(r.file)
	if err != nil {
		r.log.Error("reload failed; the policy in force stays", "file", r.file, "err", err)
		r.done()
		return
	}
	sum := sha256.Sum256(b)
	if !force && bytes.Equal(sum[:], r.sum[:]) {
		return
	}
	r.sum = sum
	l, err := loadConfig(r.file)
	if err != nil {
		r.log.Error("reload failed; the policy in force stays", "file", r.file, "err", err)
		r.done()
		return
	}
	if r.beforeSwap != nil {
		r.beforeSwap(l)
	}
	r.auth.Swap(l.policy)
	r.log.Info("policy reloaded", "file", r.file, "rules", len(l.policy.Summary().Rules))
	if r.onSwap != nil {
		r.onSwap(l)
	}
	r.done()
}

func (r *reloader) done() {
	if r.reloaded != nil {
		select {
		case r.reloaded <- struct{}{}:
		default:
		}
	}
}
