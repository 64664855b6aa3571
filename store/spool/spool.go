// Package spool is a node's durable local queue of records bound for the
// shared store (PostgreSQL): the Wi-Fi login path and accounting write
// here, never to the database, so an outage of the database stops neither.
//
// Records are appended in order to segment files (seg-NNNNNNNNNN.jsonl in
// Dir, one JSON line each, written whole and fsynced by policy/jsonl before
// Append returns), each with a per-node sequence number. A replayer (Run)
// reads them in order, hands them to a Target in batches, and advances a
// durable cursor (cursor.json, written atomically) only after the Target
// committed them. A crash between the commit and the cursor write replays
// the batch: the Target must be idempotent by (node, seq), which the
// PostgreSQL tables guarantee with a unique idem_key. Fully replayed
// segments are deleted. The spool is bounded only by the disk: when it is
// full, Append fails and the caller does not acknowledge (accounting) or
// logs (sessions).
package spool

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/policy/atomicfile"
	"github.com/gatehouse/gatehouse/policy/jsonl"
)

// Entry is one spooled record.
type Entry struct {
	Seq  uint64          `json:"seq"`
	Kind string          `json:"kind"` // "acct", "session", "session_end"
	Time time.Time       `json:"t"`
	Data json.RawMessage `json:"data"`
}

// Key is the idempotency key of an entry written by node.
func Key(node string, seq uint64) string { return node + ":" + strconv.FormatUint(seq, 10) }

// Target receives replayed entries, in order. Apply must commit all of
// them or none, and be idempotent by Key(node, e.Seq).
type Target interface {
	Apply(ctx context.Context, node string, entries []Entry) error
}

// Config sets up a spool. Dir and Node are required.
type Config struct {
	Dir  string // created 0700 if missing
	Node string // this node's name, part of every idempotency key
	// SegmentBytes starts a new segment file past this size; default 64 MiB.
	SegmentBytes int64
	// BatchMax bounds the entries per Apply; default 1000.
	BatchMax int
	// ApplyTimeout bounds one Apply; default 30s.
	ApplyTimeout time.Duration
	// Linger is the pause after replaying a batch smaller than BatchMax,
	// so that a trickle of records is committed in a few batches rather
	// than one transaction (and one cursor fsync) per record; default
	// 100ms, negative for none. It delays only the records' arrival in
	// the store, never an acknowledgement.
	Linger time.Duration
	// RetryMax is the longest wait between attempts while the Target
	// fails; default 10s (the first retry waits 200ms, then doubling).
	RetryMax time.Duration
}

// Stats describes the queue, for metrics and readiness.
type Stats struct {
	Records   uint64    // appended, not yet committed to the Target
	Oldest    time.Time // time of the oldest of those, zero when none
	Replayed  uint64    // entries committed since Open
	Failing   bool      // the last Apply failed
	LastError string    // its error
}

// Spool is a durable queue; Append is safe for concurrent use.
type Spool struct {
	cfg Config
	log *slog.Logger

	wake chan struct{} // a record was appended

	mu       sync.Mutex // guards the fields below
	app      *jsonl.Appender
	seg      int    // segment being appended to
	seq      uint64 // last sequence number appended
	done     uint64 // last sequence number committed to the Target
	oldest   time.Time
	replayed uint64
	failing  bool
	lastErr  string
	closed   bool

	// Owned by Run.
	rseg int
	roff int64
}

type cursor struct {
	Segment int    `json:"segment"`
	Offset  int64  `json:"offset"`
	Seq     uint64 `json:"seq"`
}

const segPrefix, segSuffix = "seg-", ".jsonl"

func segName(n int) string { return fmt.Sprintf("%s%010d%s", segPrefix, n, segSuffix) }

// Open opens or creates the spool in cfg.Dir, repairing a segment that
// ends in a partial line (a crash during a write: never acknowledged).
func Open(cfg Config, log *slog.Logger) (*Spool, error) {
	if cfg.Dir == "" || cfg.Node == "" {
		return nil, errors.New("spool: dir and node are required")
	}
	if cfg.SegmentBytes <= 0 {
		cfg.SegmentBytes = 64 << 20
	}
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = 1000
	}
	if cfg.ApplyTimeout <= 0 {
		cfg.ApplyTimeout = 30 * time.Second
	}
	if cfg.Linger == 0 {
		cfg.Linger = 100 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 10 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{cfg: cfg, log: log, wake: make(chan struct{}, 1)}
	c, err := s.readCursor()
	if err != nil {
		return nil, err
	}
	segs, err := s.segments()
	if err != nil {
		return nil, err
	}
	s.done, s.seq = c.Seq, c.Seq
	s.rseg, s.roff = c.Segment, c.Offset
	if s.rseg == 0 {
		s.rseg = 1
	}
	// The reader starts at the cursor's segment, or the first one after
	// it (the cursor's was deleted once replayed).
	if i := sort.SearchInts(segs, s.rseg); i < len(segs) && segs[i] != s.rseg {
		s.rseg, s.roff = segs[i], 0
	}
	s.seg = s.rseg
	if len(segs) > 0 && segs[len(segs)-1] > s.seg {
		s.seg = segs[len(segs)-1]
	}
	path := filepath.Join(cfg.Dir, segName(s.seg))
	if s.app, err = jsonl.Open(path, 0o600); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if n := s.app.Cut(); n > 0 {
		log.Warn("spool: segment ended in a partial line (crash during a write; never acknowledged); cut it", "file", path, "bytes", n)
	}
	// The newest sequence number is the last line of the newest segment.
	if last, err := lastSeq(path, s.app.Size()); err != nil {
		s.app.Close()
		return nil, err
	} else if last > s.seq {
		s.seq = last
	}
	if s.seq > s.done {
		s.oldest = time.Now() // refined by the replayer's first read
	}
	return s, nil
}

func (s *Spool) segments() ([]int, error) {
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var out []int
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), segPrefix)
		if !ok || !strings.HasSuffix(n, segSuffix) {
			continue
		}
		if v, err := strconv.Atoi(strings.TrimSuffix(n, segSuffix)); err == nil && v > 0 {
			out = append(out, v)
		}
	}
	sort.Ints(out)
	return out, nil
}

func lastSeq(path string, size int64) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	var last uint64
	sc := bufio.NewScanner(io.NewSectionReader(f, 0, size))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var e struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Seq > last {
			last = e.Seq
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("spool: %s: %w", path, err)
	}
	return last, nil
}

func (s *Spool) readCursor() (cursor, error) {
	var c cursor
	b, err := os.ReadFile(filepath.Join(s.cfg.Dir, "cursor.json"))
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("spool: cursor: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("spool: cursor.json: %w", err)
	}
	return c, nil
}

// writeCursor replaces cursor.json atomically and durably.
func (s *Spool) writeCursor(c cursor) error {
	b, _ := json.Marshal(c)
	path := filepath.Join(s.cfg.Dir, "cursor.json")
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("spool: cursor: %w", err)
	}
	return nil
}

// Append adds one entry of kind per element of data (each a JSON value),
// in order, and returns once they are durable. On error none was added.
func (s *Spool) Append(kind string, data ...[]byte) error {
	if len(data) == 0 {
		return nil
	}
	now := time.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("spool: closed")
	}
	// The line is Entry's JSON, built by hand: data is the caller's JSON
	// (one value, no newline), not parsed and compacted again.
	kq, _ := json.Marshal(kind)
	tq := now.AppendFormat(nil, `"`+time.RFC3339Nano+`"`)
	n := 0
	for _, d := range data {
		if len(d) == 0 || bytes.IndexByte(d, '\n') >= 0 {
			return errors.New("spool: a record must be one line of JSON")
		}
		n += len(d) + 64 + len(kq)
	}
	buf := make([]byte, 0, n)
	seq := s.seq
	for _, d := range data {
		seq++
		buf = append(buf, `{"seq":`...)
		buf = strconv.AppendUint(buf, seq, 10)
		buf = append(append(buf, `,"kind":`...), kq...)
		buf = append(append(buf, `,"t":`...), tq...)
		buf = append(append(buf, `,"data":`...), d...)
		buf = append(buf, "}\n"...)
	}
	if err := s.app.Append(buf); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := s.app.Sync(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if s.seq == s.done {
		s.oldest = now
	}
	s.seq = seq
	if s.app.Size() >= s.cfg.SegmentBytes {
		s.rotateLocked()
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// rotateLocked starts the next segment; on failure it keeps appending to
// the current one (and tries again at the next Append).
func (s *Spool) rotateLocked() {
	path := filepath.Join(s.cfg.Dir, segName(s.seg+1))
	app, err := jsonl.Open(path, 0o600)
	if err == nil {
		err = atomicfile.SyncDir(s.cfg.Dir)
	}
	if err != nil {
		if app != nil {
			app.Close()
		}
		s.log.Warn("spool: starting a new segment failed; appending to the current one", "err", err)
		return
	}
	if err := s.app.Close(); err != nil {
		s.log.Warn("spool: closing a full segment", "err", err)
	}
	s.app, s.seg = app, s.seg+1
}

// Stats reports the queue's depth and age.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Records: s.seq - s.done, Replayed: s.replayed, Failing: s.failing, LastError: s.lastErr}
	if st.Records > 0 {
		st.Oldest = s.oldest
	}
	return st
}

// Close closes the current segment; Append fails afterwards. Call it after
// Run has returned.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.app.Close()
}
