// Package audit writes the audit trail: one JSON line per access decision at
// either door, to a size-rotated file or to a writer such as stdout. It
// implements policy.Auditor. Audit never blocks the door: events go through
// a bounded queue, and when the queue is full they are dropped and counted.
// It imports only the standard library and policy.
package audit

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/policy"
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
type Writer struct {
	cfg  Config
	log  *slog.Logger
	q    chan policy.AuditEvent
	stop atomic.Bool

	written, dropped, errs atomic.Uint64

	// Owned by Run.
	f    *os.File
	bw   *bufio.Writer
	size int64
}

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
	Written uint64 // lines written
	Dropped uint64 // events dropped: queue full or writer stopped
	Errors  uint64 // write, sync or rotation failures
	Queued  int    // events waiting
}

// Stats returns the counters.
func (w *Writer) Stats() Stats {
	return Stats{Written: w.written.Load(), Dropped: w.dropped.Load(), Errors: w.errs.Load(), Queued: len(w.q)}
}

// Run writes queued events until ctx is done, then writes what is still
// queued, flushes, syncs and closes the file, and returns.
func (w *Writer) Run(ctx context.Context) error {
	if err := w.open(); err != nil {
		return err
	}
	t := time.NewTicker(w.cfg.FlushEvery)
	defer t.Stop()
	var line []byte
	for {
		select {
		case ev := <-w.q:
			line = w.write(line[:0], &ev)
		case <-t.C:
			w.flush()
		case <-ctx.Done():
			w.stop.Store(true)
			for {
				select {
				case ev := <-w.q:
					line = w.write(line[:0], &ev)
					continue
				default:
				}
				break
			}
			w.flush()
			if w.f != nil {
				if err := w.f.Close(); err != nil {
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
		w.bw = bufio.NewWriterSize(w.cfg.Output, 64<<10)
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(w.cfg.File), 0o750); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	f, err := os.OpenFile(w.cfg.File, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	w.f, w.size = f, st.Size()
	if w.bw == nil {
		w.bw = bufio.NewWriterSize(f, 64<<10)
	} else {
		w.bw.Reset(f)
	}
	return nil
}

func (w *Writer) write(buf []byte, ev *policy.AuditEvent) []byte {
	buf, err := AppendJSON(buf, ev)
	if err != nil {
		w.errs.Add(1)
		return buf
	}
	if w.f != nil && w.size > 0 && w.size+int64(len(buf)) > w.cfg.MaxSize {
		if err := w.rotate(); err != nil {
			w.errs.Add(1)
			w.log.Error("audit: rotate", "err", err)
			if w.f == nil {
				w.dropped.Add(1)
				return buf
			}
		}
	}
	if _, err := w.bw.Write(buf); err != nil {
		w.errs.Add(1)
		w.log.Error("audit: write", "err", err)
		return buf
	}
	w.size += int64(len(buf))
	w.written.Add(1)
	return buf
}

func (w *Writer) flush() {
	if err := w.bw.Flush(); err != nil {
		w.errs.Add(1)
		w.log.Error("audit: write", "err", err)
	}
	if w.f != nil {
		if err := w.f.Sync(); err != nil {
			w.errs.Add(1)
			w.log.Error("audit: fsync", "err", err)
		}
	}
}

// rotate closes the file, shifts File.N to File.N+1 (the oldest beyond Keep
// is removed) and opens a new File.
func (w *Writer) rotate() error {
	w.flush()
	err := w.f.Close()
	w.f = nil
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
	Time        string   `json:"time"`
	Door        string   `json:"door"`
	Event       string   `json:"event"`
	NAS         string   `json:"nas,omitempty"`
	NASAddr     string   `json:"nas_addr,omitempty"`
	Client      string   `json:"client,omitempty"`
	Peer        string   `json:"peer,omitempty"`
	Outcome     string   `json:"outcome"`
	Code        string   `json:"code"`
	Rule        string   `json:"rule,omitempty"`
	Reason      string   `json:"reason,omitempty"`
	Kind        string   `json:"kind,omitempty"`
	Name        string   `json:"name,omitempty"`
	Field       string   `json:"field,omitempty"`
	UPN         []string `json:"upn,omitempty"`
	Email       []string `json:"email,omitempty"`
	CN          string   `json:"cn,omitempty"`
	Serial      string   `json:"serial,omitempty"`
	Fingerprint string   `json:"fingerprint,omitempty"`
	CertSerial  string   `json:"cert_serial,omitempty"`
	Subject     string   `json:"subject,omitempty"`
	Issuer      string   `json:"issuer,omitempty"`
	DN          string   `json:"dn,omitempty"`
	Groups      []string `json:"groups,omitempty"`
	TLSVersion  string   `json:"tls_version,omitempty"`
	Resumed     bool     `json:"resumed,omitempty"`
	DurationMS  float64  `json:"duration_ms"`
}

// AppendJSON appends ev's JSON line (with its newline) to b.
func AppendJSON(b []byte, ev *policy.AuditEvent) ([]byte, error) {
	d := &ev.Decision
	id := &d.Identity
	l := line{
		Time: ev.Time.UTC().Format(time.RFC3339Nano), Door: ev.Door, Event: ev.Event,
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
	j, err := json.Marshal(&l)
	if err != nil {
		return b, fmt.Errorf("audit: %w", err)
	}
	b = append(b, j...)
	return append(b, '\n'), nil
}
