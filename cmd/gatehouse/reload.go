package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// reloader recompiles the configuration on SIGHUP and when the config file
// or a trust file it names (CAs, intermediates, CRL files, the server
// certificate and key) changes, and swaps the policy whole. A configuration
// that fails to compile is logged and the policy in force stays. Changes to
// the [directory], [radius] and [vpn] sections take effect at restart.
type reloader struct {
	file       string
	auth       *policy.Authorizer
	log        *slog.Logger
	every      time.Duration  // how often the files are polled for changes
	beforeSwap func(*loaded)  // called before a compiled policy is swapped in
	onSwap     func(*loaded)  // called after a successful swap (e.g. VPN re-validation)
	onHUP      func()         // called on SIGHUP before the reload (log reopening)
	hup        chan os.Signal // SIGHUP; nil disables signals (tests)
	reloaded   chan struct{}  // receives after each attempt, for tests; may be nil
	notify     *sdNotifier    // systemd, told of forced reloads; nil = none

	// Only the Run goroutine uses these.
	cur   *loaded // the configuration in force
	state [sha256.Size]byte
}

func newReloader(l *loaded, auth *policy.Authorizer, log *slog.Logger) *reloader {
	r := &reloader{file: l.file, auth: auth, log: log, every: 2 * time.Second, cur: l}
	r.state, _ = r.fingerprint(l)
	return r
}

// fingerprint sums the config file's content and the size and modification
// time of every trust file of l (content would cost too much for large CRLs).
func (r *reloader) fingerprint(l *loaded) ([sha256.Size]byte, error) {
	h := sha256.New()
	b, err := os.ReadFile(r.file)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	h.Write(b)
	t := &l.cfg.Trust
	files := append(append(append([]string{t.ServerCert, t.ServerKey}, t.ClientCA...), t.Intermediates...), t.CRL...)
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(h, "%s\x00%d\x00%d\x00", f, fi.Size(), fi.ModTime().UnixNano())
		} else {
			fmt.Fprintf(h, "%s\x00missing\x00", f)
		}
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum, nil
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
			if r.onHUP != nil {
				r.onHUP()
			}
			r.forceReload()
		case <-t.C:
			r.reload(false)
		}
	}
}

// reload recompiles if forced or if a watched file changed.
func (r *reloader) reload(force bool) {
	sum, err := r.fingerprint(r.cur)
	if err != nil {
		r.log.Error("reload failed; the policy in force stays", "file", r.file, "err", err)
		r.done()
		return
	}
	if !force && sum == r.state {
		return
	}
	r.state = sum
	l, err := loadConfig(r.file)
	if err != nil {
		r.log.Error("reload failed; the policy in force stays", "file", r.file, "err", err)
		r.done()
		return
	}
	if !reflect.DeepEqual(l.cfg.sections, r.cur.cfg.sections) {
		r.log.Warn("changes to [directory], [radius] or [vpn] take effect at restart", "file", r.file)
	}
	if r.beforeSwap != nil {
		r.beforeSwap(l)
	}
	r.auth.Swap(l.policy)
	r.cur = l
	// The new trust files may differ from the old ones: watch those.
	r.state, _ = r.fingerprint(l)
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
