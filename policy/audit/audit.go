// Package audit writes the audit trail: one JSON line per access decision at
// either door, to a size-rotated file or to a writer such as stdout. It
// implements policy.Auditor. Audit never blocks the door: events go through
// a bounded queue, and when the queue is full they are dropped and counted.
// It imports only the standard library and policy.
package audit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/jsonl"
)

// Defaults.
const (
	DefaultMaxSize    = 100 << 20 // bytes per file before rotation
	DefaultKeep       = 10        // rotated files kept
	DefaultQueue      = 4096      // events waiting to be written
	DefaultFlushEvery = time.Second
)

// Config configures a Writer. Zero values mean the defaults.
type Config struct {
	// File is the audit file (e.g. state_dir/audit.jsonl). When it grows
	// past MaxSize it is renamed File.1 (File.1 to File.2, …) and a new one
	// started; only Keep rotated files are kept. Empty means Output.
	File    string
	MaxSize int64
	Keep    int
	// Output receives the lines when File is empty (e.g. os.Stdout). It is
	// never closed.
	Output io.Writer
	// Queue bounds the events waiting to be written; default 4096.
	Queue int
	// FlushEvery is how often buffered lines are written and the file
	// synced; default 1s. Run also flushes and syncs when it returns.
	FlushEvery time.Duration
}

// Writer is the audit trail writer. Create it with New, start Run, hand it
// to the doors as their policy.Auditor.
//
// Durability: lines are collected for up to FlushEvery (or 64 KiB), then
// appended to the file and synced. A failed write or sync (a full disk, an
// I/O error) is rolled back to the last whole line (package jsonl), the
// events that did not reach the disk are counted as dropped, and the
// writer keeps going: the next flush tries again, so the trail resumes by
// itself once space returns. Errors are logged at most every
// errorLogEvery.
type Writer struct {
	cfg  Config
	log  *slog.Logger
	q    chan policy.AuditEvent
	stop atomic.Bool

	written, dropped, errs atomic.Uint64

	openFile func(string, os.FileMode) (*jsonl.Appender, error) // tests: fault injection; nil = jsonl.Open

	// Owned by Run.
	app      *jsonl.Appender // nil in Output mode, or while the file cannot be opened
	buf      []byte          // lines not yet written
	bufN     int             // events in buf
	unsynced int             // events written to the file but not yet synced
	failing  bool            // the last write or sync failed
	lastLog  time.Time       // last error logged
	quiet    uint64          // errors not logged since lastLog
}

// errorLogEvery rate-limits the ERROR log of write failures.
const errorLogEvery = 10 * time.Second

// flushAt is the size of buffered lines that triggers a write.
const flushAt = 64 << 10

var _ policy.Auditor = (*Writer)(nil)

// New validates cfg and returns a Writer; it opens nothing. A nil logger
// discards.
func New(cfg Config, logger *slog.Logger) (*Writer, error) {
	if cfg.File == "" && cfg.Output == nil {
		return nil, errors.New("audit: no file and no output")
	}
	if cfg.MaxSize == 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if cfg.Keep == 0 {
		cfg.Keep = DefaultKeep
	}
	if cfg.Queue == 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.FlushEvery == 0 {
		cfg.FlushEvery = DefaultFlushEvery
	}
	switch {
	case cfg.MaxSize < 4096:
		return nil, fmt.Errorf("audit: max size %d: want at least 4096 bytes", cfg.MaxSize)
	case cfg.Keep < 0:
		return nil, fmt.Errorf("audit: keep %d: must not be negative", cfg.Keep)
	case cfg.Queue < 1 || cfg.FlushEvery < 0:
		return nil, errors.New("audit: queue and flush interval must be positive")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Writer{cfg: cfg, log: logger, q: make(chan policy.AuditEvent, cfg.Queue)}, nil
}

// Audit queues ev; it never blocks. A full queue (or a stopped writer)
// drops the event and counts it.
func (w *Writer) Audit(ev policy.AuditEvent) {
	if w.stop.Load() {
		w.dropped.Add(1)
		return
	}
	select {
	case w.q <- ev:
	default:
		w.dropped.Add(1)
	}
}

// Stats is a snapshot of the writer's counters.
type Stats struct {
	Written uint64 // lines written (to a file: and synced)
	Dropped uint64 // events not written: queue full, writer stopped, or a failed write or sync
	Errors  uint64 // write, sync, open or rotation failures
	Queued  int    // events waiting
}

// Stats returns the counters.
func (w *Writer) Stats() Stats {
	return Stats{Written: w.written.Load(), Dropped: w.dropped.Load(), Errors: w.errs.Load(), Queued: len(w.q)}
}

// Run writes queued events until ctx is done, then writes what is still
// queued, syncs and closes the file, and returns. It fails only when the
// file cannot be opened at start; later failures are counted and logged.
func (w *Writer) Run(ctx context.Context) error {
	if err := w.open(); err != nil {
		return err
	}
	t := time.NewTicker(w.cfg.FlushEvery)
	defer t.Stop()
	for {
		select {
		case ev := <-w.q:
			w.add(&ev)
		case <-t.C:
			w.flush(true)
		case <-ctx.Done():
			w.stop.Store(true)
			for {
				select {
				case ev := <-w.q:
					w.add(&ev)
					continue
				default:
				}
				break
			}
			w.flush(true)
			if w.app != nil {
				if err := w.app.Close(); err != nil {
					w.errs.Add(1)
					return fmt.Errorf("audit: close: %w", err)
				}
			}
			return nil
		}
	}
}

func (w *Writer) open() error {
	if w.cfg.File == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(w.cfg.File), 0o750); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	open := jsonl.Open
	if w.openFile != nil {
		open = w.openFile
	}
	app, err := open(w.cfg.File, 0o640)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if n := app.Cut(); n > 0 {
		w.log.Warn("audit: the file ended in a partial line (crash during a write); cut it, copy kept", "file", w.cfg.File, "bytes", n, "copy", w.cfg.File+".partial", "copy_error", app.QuarantineErr())
	}
	w.app = app
	return nil
}

// add encodes ev into the buffer, rotating and writing as needed.
func (w *Writer) add(ev *policy.AuditEvent) {
	n := len(w.buf)
	buf, err := AppendJSON(w.buf, ev)
	if err != nil {
		w.buf = buf[:n]
		w.fail("encode", err, 1)
		return
	}
	w.buf = buf
	w.bufN++
	if w.cfg.File != "" && w.app != nil && w.app.Size()+int64(n) > 0 && w.app.Size()+int64(len(w.buf)) > w.cfg.MaxSize {
		// Write what came before this event to the current file.
		line := append([]byte(nil), w.buf[n:]...)
		w.buf, w.bufN = w.buf[:n], w.bufN-1
		w.flush(true)
		if err := w.rotate(); err != nil {
			w.fail("rotate", err, 0)
		}
		w.buf, w.bufN = append(w.buf, line...), w.bufN+1
	}
	if len(w.buf) >= flushAt {
		w.flush(false)
	}
}

// flush writes the buffered lines and, if sync, syncs the file. Events
// that do not reach the disk are counted as dropped.
func (w *Writer) flush(sync bool) {
	if w.bufN > 0 {
		w.writeBuf()
	}
	if sync && w.app != nil && w.unsynced > 0 {
		if err := w.app.Sync(); err != nil {
			// Rolled back to the last sync: the lines since are gone.
			w.fail("fsync", err, w.unsynced)
		} else {
			w.written.Add(uint64(w.unsynced))
			w.recovered()
		}
		w.unsynced = 0
	}
}

func (w *Writer) writeBuf() {
	n := w.bufN
	defer func() { w.buf, w.bufN = w.buf[:0], 0 }()
	if w.cfg.File == "" {
		if _, err := w.cfg.Output.Write(w.buf); err != nil {
			w.fail("write", err, n)
			return
		}
		w.written.Add(uint64(n))
		w.recovered()
		return
	}
	if w.app == nil {
		if err := w.open(); err != nil {
			w.fail("open", err, n)
			return
		}
	}
	if err := w.app.Append(w.buf); err != nil {
		w.fail("write", err, n)
		return
	}
	w.unsynced += n
}

// fail counts a failure that lost lost events and logs it, at most once
// per errorLogEvery.
func (w *Writer) fail(op string, err error, lost int) {
	w.errs.Add(1)
	w.dropped.Add(uint64(lost))
	w.failing = true
	if now := time.Now(); now.Sub(w.lastLog) >= errorLogEvery {
		w.log.Error("audit: "+op+" failed; events dropped, will retry", "err", err, "lost", lost,
			"errors_not_logged", w.quiet, "dropped_total", w.dropped.Load())
		w.lastLog, w.quiet = now, 0
	} else {
		w.quiet++
	}
}

// recovered logs once that writing works again.
func (w *Writer) recovered() {
	if w.failing {
		w.failing = false
		w.log.Info("audit: writing again", "dropped_total", w.dropped.Load(), "errors_total", w.errs.Load())
	}
}

// rotate closes the file, shifts File.N to File.N+1 (the oldest beyond Keep
// is removed) and opens a new File. The caller has flushed and synced.
func (w *Writer) rotate() error {
	err := w.app.Close()
	w.app = nil
	name := w.cfg.File
	os.Remove(fmt.Sprintf("%s.%d", name, w.cfg.Keep))
	for i := w.cfg.Keep - 1; i >= 1; i-- {
		os.Rename(fmt.Sprintf("%s.%d", name, i), fmt.Sprintf("%s.%d", name, i+1))
	}
	if w.cfg.Keep > 0 {
		if rerr := os.Rename(name, name+".1"); rerr != nil {
			err = errors.Join(err, rerr)
		}
	} else if rerr := os.Remove(name); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if oerr := w.open(); oerr != nil {
		return errors.Join(err, oerr)
	}
	return err
}

// line is the JSON form of one event; see README "Audit trail".
type line struct {
	Time        time.Time `json:"time"` // UTC; RFC 3339 with nanoseconds, as time.Time marshals
	Door        string    `json:"door"`
	Event       string    `json:"event"`
	NAS         string    `json:"nas,omitempty"`
	NASAddr     string    `json:"nas_addr,omitempty"`
	Client      string    `json:"client,omitempty"`
	Peer        string    `json:"peer,omitempty"`
	Outcome     string    `json:"outcome"`
	Code        string    `json:"code"`
	Rule        string    `json:"rule,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	Kind        string    `json:"kind,omitempty"`
	Name        string    `json:"name,omitempty"`
	Field       string    `json:"field,omitempty"`
	UPN         []string  `json:"upn,omitempty"`
	Email       []string  `json:"email,omitempty"`
	CN          string    `json:"cn,omitempty"`
	Serial      string    `json:"serial,omitempty"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	CertSerial  string    `json:"cert_serial,omitempty"`
	Subject     string    `json:"subject,omitempty"`
	Issuer      string    `json:"issuer,omitempty"`
	DN          string    `json:"dn,omitempty"`
	Groups      []string  `json:"groups,omitempty"`
	TLSVersion  string    `json:"tls_version,omitempty"`
	Resumed     bool      `json:"resumed,omitempty"`
	DurationMS  float64   `json:"duration_ms"`
}

// AppendJSON appends ev's JSON line (with its newline) to b.
func AppendJSON(b []byte, ev *policy.AuditEvent) ([]byte, error) {
	d := &ev.Decision
	id := &d.Identity
	l := line{
		Time: ev.Time.UTC(), Door: ev.Door, Event: ev.Event,
		NAS: ev.NAS, Outcome: "deny", Code: d.Code.String(), Rule: d.Rule, Reason: d.Reason,
		Name: id.Name, Field: id.Field, UPN: id.UPN, Email: id.Email, CN: id.CN, Serial: id.Serial,
		Fingerprint: id.Fingerprint, CertSerial: id.CertSerial, Subject: id.Subject, Issuer: id.Issuer,
		DN: d.DN, Groups: d.Groups, Resumed: ev.Resumed,
		DurationMS: float64(ev.Duration.Microseconds()) / 1000,
	}
	if ev.Allowed {
		l.Outcome = "allow"
	}
	if ev.Reason != "" {
		l.Reason = ev.Reason
	}
	if id.Field != "" || id.DeviceRule != "" {
		l.Kind = id.Kind.String() // classified: the chain was trusted
	}
	if ev.NASAddr.IsValid() {
		l.NASAddr = ev.NASAddr.String()
	}
	if ev.Client.IsValid() {
		l.Client = ev.Client.String()
	}
	if ev.Peer.IsValid() {
		l.Peer = ev.Peer.String()
	}
	switch ev.TLSVersion {
	case 0:
	case tls.VersionTLS12:
		l.TLSVersion = "1.2"
	case tls.VersionTLS13:
		l.TLSVersion = "1.3"
	default:
		l.TLSVersion = tls.VersionName(ev.TLSVersion)
	}
	b, err := appendLine(b, &l)
	if err != nil {
		return b, fmt.Errorf("audit: %w", err)
	}
	return append(b, '\n'), nil
}
