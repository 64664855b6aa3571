package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// Reload timing defaults.
const (
	reloadEvery  = 2 * time.Second        // how often the files are looked at (stat only)
	reloadSettle = 500 * time.Millisecond // a changed file must stay unchanged this long before it is read
	maxSettle    = 30 * time.Second       // a file still changing after this is left for the next tick
	racyWindow   = 2 * time.Second        // mtime granularity of the coarsest file systems
	maxBackoff   = 30 * time.Second       // longest wait before retrying a reload that ran out of descriptors
)

// reloader recompiles the configuration on SIGHUP and when the config file,
// a trust file it names (CAs, intermediates, CRL files, device issuer CAs,
// the server certificate and key) or the directory's LDIF file changes,
// and swaps the policy whole.
//
// A file must be whole before it is loaded: a change is acted on once every
// watched file has kept its size and times for the settle interval; the
// config file is read once, and those bytes are both compiled and
// fingerprinted; a file that changed while it was read or compiled is read
// again later. loadConfig refuses a file that does not end with [end] or
// has no rule without deny_all = true. A configuration that is refused is
// logged and the policy in force stays.
//
// Every reload (SIGHUP included) re-reads the directory and invalidates its
// cache before the live VPN peers and Wi-Fi sessions are re-validated, so a
// group change reaches them at once. Changes to the [server], [store],
// [directory], [radius] and [vpn] sections (restartSections) take effect
// at restart, and a reload that sees one logs a warning naming them.
//
// Looking for changes opens nothing (stat only). A reload that cannot open
// a file for lack of file descriptors (EMFILE, ENFILE) is postponed and
// retried with backoff, never taken for a broken file.
type reloader struct {
	file       string
	dirFile    string // the directory's LDIF file, watched too ("" = none)
	auth       *policy.Authorizer
	log        *slog.Logger
	every      time.Duration                // how often the files are polled for changes
	settle     time.Duration                // how long a changed file must stay unchanged before it is read
	readFile   func(string) ([]byte, error) // os.ReadFile; tests inject failures
	beforeSwap func(*loaded)                // called before a compiled policy is swapped in
	refreshDir func() error                 // re-reads the directory, invalidates its cache; may be nil
	onSwap     func(*loaded)                // called after each reload with the config in force (re-validation)
	onHUP      func()                       // called on SIGHUP before the reload (log reopening)
	hup        chan os.Signal               // SIGHUP; nil: Run subscribes to the signal
	reloaded   chan struct{}                // receives after each attempt, for tests; may be nil
	ctl        chan chan struct{}           // forced reloads from the control socket; closes the channel after
	notify     *sdNotifier                  // systemd, told of forced reloads; nil = none

	// Only the Run goroutine uses these.
	cur     *loaded           // the configuration in force
	watch   *loaded           // whose trust files are watched: cur, or the last decoded file
	seen    signature         // the files when last read, whatever came of it
	seenSum [sha256.Size]byte // the config bytes last read
	racy    bool              // seen was taken so soon after a write that a same-size write could hide: compare content
	force   bool              // a SIGHUP not yet served
	retryAt time.Time         // a postponed reload is not retried before
	backoff time.Duration     // the next postponement's wait
}

func newReloader(l *loaded, auth *policy.Authorizer, log *slog.Logger) *reloader {
	r := &reloader{file: l.file, auth: auth, log: log, every: reloadEvery, settle: reloadSettle,
		readFile: os.ReadFile, cur: l, watch: l, seenSum: l.sum, ctl: make(chan chan struct{})}
	r.seen = r.signature()
	// l was read before this stat: leave the config file's entry empty so
	// the first look reads it and compares its content with l.sum.
	r.seen.cfg = fileStat{}
	return r
}

// watchDirectory makes a change of the directory's LDIF file a reload; the
// file as it is now counts as read (the directory read it at start).
func (r *reloader) watchDirectory(file string) {
	r.dirFile = file
	r.seen.dir = statFile(file)
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
			r.forceReload(ctx)
		case <-t.C:
			r.attempt(ctx)
		case done := <-r.ctl:
			r.log.Info("reload requested over the control socket", "file", r.file)
			r.forceReload(ctx)
			close(done)
		}
	}
}

// attempt reloads if forced or if a watched file changed, once the files
// have settled.
func (r *reloader) attempt(ctx context.Context) {
	if !r.force && time.Now().Before(r.retryAt) {
		return
	}
	sig := r.signature()
	retrying := !r.retryAt.IsZero()
	if !r.force && !retrying && !r.racy && sig.equal(r.seen) {
		return
	}
	if !sig.equal(r.seen) {
		var ok bool
		if sig, ok = r.settled(ctx, sig); !ok {
			return
		}
	}
	b, err := r.readFile(r.file)
	if err != nil {
		r.fail(err)
		return
	}
	if !r.signature().equal(sig) {
		r.log.Info("config file changed while it was read; reading it again", "file", r.file)
		return // seen is unchanged: the next look settles and reads again
	}
	sum := sha256.Sum256(b)
	cfgChanged := sum != r.seenSum || !sig.sameTrust(r.seen)
	dirChanged := sig.dir != r.seen.dir
	if !r.force && !cfgChanged && !dirChanged {
		r.settledOn(sig, sum) // touched, or a racy look: nothing new
		return
	}
	defer r.done()
	rec := sig // what is recorded as seen once done
	var l *loaded
	if r.force || cfgChanged {
		var trust []fileStat
		l, trust, err = r.load(b)
		switch {
		case errors.Is(err, errTorn):
			r.log.Info("a trust file changed while it was read; reading it again", "file", r.file)
			return
		case isFDExhausted(err):
			r.fail(err)
			return
		case err != nil:
			r.log.Error("reload refused; the policy in force stays", "file", r.file, "err", err)
			l = nil
		}
		if trust != nil {
			rec.trust = trust // the files the decoded config names, as compiled
		}
		if err != nil && !r.force && !dirChanged {
			r.settledOn(rec, sum)
			return
		}
	}
	if r.refreshDir != nil {
		if err := r.refreshDir(); err != nil {
			if isFDExhausted(err) {
				r.fail(err)
				return
			}
			r.log.Warn("directory not re-read; its previous contents stay", "err", err)
		}
	}
	if l != nil {
		if changed := restartChanges(&r.cur.cfg, &l.cfg); len(changed) > 0 {
			list := strings.Join(changed, ", ")
			r.log.Warn("changes to "+list+" take effect at restart", "sections", list, "file", r.file)
		}
		if r.beforeSwap != nil {
			r.beforeSwap(l)
		}
		r.auth.Swap(l.policy)
		r.cur = l
		r.log.Info("policy reloaded", "file", r.file, "rules", len(l.policy.Summary().Rules))
	}
	r.settledOn(rec, sum)
	if r.onSwap != nil {
		r.onSwap(r.cur)
	}
}

// load decodes and compiles b. Once decoded, the trust files it names are
// the ones watched; their signature is returned (nil if b did not decode).
// If one of them changed while it was compiled (a torn read), the error is
// errTorn and the next look tries again.
func (r *reloader) load(b []byte) (*loaded, []fileStat, error) {
	l, err := decodeConfig(r.file, b)
	if err != nil {
		return nil, nil, err
	}
	r.watch = l
	before := statAll(trustFiles(l))
	err = l.compile()
	if after := statAll(trustFiles(l)); !slices.Equal(after, before) {
		return nil, nil, errTorn
	}
	if err != nil {
		return nil, before, err
	}
	return l, before, nil
}

var errTorn = errors.New("a file changed while it was read")

// settledOn records what was read and ends a forced or postponed reload.
func (r *reloader) settledOn(sig signature, sum [sha256.Size]byte) {
	r.seen, r.seenSum = sig, sum
	// A write now would get an mtime the same as this one only if this one
	// is within the file system's granularity of now.
	d := time.Since(time.Unix(0, sig.cfg.mtime))
	r.racy = d < racyWindow && d > -racyWindow
	r.force = false
	r.retryAt, r.backoff = time.Time{}, 0
}

// fail postpones a reload that could not read the config file or ran out
// of file descriptors; it is retried with backoff (SIGHUP retries at once).
func (r *reloader) fail(err error) {
	defer r.done()
	if r.backoff == 0 {
		r.backoff = time.Second
	}
	r.retryAt = time.Now().Add(r.backoff)
	what := "reload postponed; the policy in force stays"
	if isFDExhausted(err) {
		what = "reload postponed: out of file descriptors; the policy in force stays"
	}
	r.log.Error(what, "file", r.file, "err", err, "retry_in", r.backoff)
	r.backoff = min(2*r.backoff, maxBackoff)
}

// settled waits until the watched files keep the same signature for the
// settle interval and returns it; false if ctx ended or they kept changing.
func (r *reloader) settled(ctx context.Context, sig signature) (signature, bool) {
	if r.settle <= 0 {
		return sig, true
	}
	deadline := time.Now().Add(maxSettle)
	t := time.NewTimer(r.settle)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return signature{}, false
		case <-t.C:
		}
		next := r.signature()
		if next.equal(sig) {
			return sig, true
		}
		if time.Now().After(deadline) {
			r.log.Warn("config files still changing; reload postponed", "file", r.file)
			return signature{}, false
		}
		sig = next
		t.Reset(r.settle)
	}
}

func (r *reloader) done() {
	if r.reloaded != nil {
		select {
		case r.reloaded <- struct{}{}:
		default:
		}
	}
}

// isFDExhausted reports whether err comes from running out of file
// descriptors, a condition that passes.
func isFDExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// restartChanges names the restart-only sections (restartSections) that
// differ between two decoded configurations, as "[server]", in file order.
func restartChanges(old, cur *fileConfig) []string {
	a, b := tomlFields(reflect.ValueOf(old).Elem()), tomlFields(reflect.ValueOf(cur).Elem())
	var out []string
	for i, f := range a {
		if slices.Contains(restartSections, f.name) && !reflect.DeepEqual(f.v.Interface(), b[i].v.Interface()) {
			out = append(out, "["+f.name+"]")
		}
	}
	return out
}
