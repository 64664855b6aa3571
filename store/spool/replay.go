package spool

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Run replays the spool into t until ctx is done, in order, in batches of
// at most BatchMax entries; while t fails it retries the same batch with
// a growing pause. It returns after its last Apply has returned.
func (s *Spool) Run(ctx context.Context, t Target) error {
	pause := time.Duration(0)
	lastLog := time.Time{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for ctx.Err() == nil {
		batch, next, err := s.read()
		if err != nil {
			s.log.Error("spool: reading a segment", "err", err)
			if !sleep(ctx, s.cfg.RetryMax) {
				break
			}
			continue
		}
		if len(batch) == 0 {
			if s.advanceSegment() {
				continue
			}
			select {
			case <-ctx.Done():
			case <-s.wake:
			case <-tick.C:
			}
			continue
		}
		s.mu.Lock()
		s.oldest = batch[0].Time
		s.mu.Unlock()
		actx, cancel := context.WithTimeout(ctx, s.cfg.ApplyTimeout)
		err = t.Apply(actx, s.cfg.Node, batch)
		cancel()
		if err != nil {
			pause = min(max(2*pause, 200*time.Millisecond), s.cfg.RetryMax)
			s.mu.Lock()
			first := !s.failing
			s.failing, s.lastErr = true, err.Error()
			pending := s.seq - s.done
			s.mu.Unlock()
			if first || time.Since(lastLog) > time.Minute {
				s.log.Warn("spool: the shared store is not taking records; kept locally, retrying", "err", err, "pending", pending)
				lastLog = time.Now()
			}
			if !sleep(ctx, pause) {
				break
			}
			continue
		}
		pause = 0
		last := batch[len(batch)-1].Seq
		if err := s.writeCursor(cursor{Segment: s.rseg, Offset: next, Seq: last}); err != nil {
			// Committed but the cursor did not move: a restart replays
			// the batch, which the Target ignores (idempotent).
			s.log.Error("spool: cursor not saved; a restart will replay (without duplicates)", "err", err)
		}
		s.roff = next
		s.mu.Lock()
		if s.failing {
			s.log.Info("spool: the shared store takes records again", "pending", s.seq-last)
		}
		s.failing, s.lastErr = false, ""
		s.done, s.replayed = last, s.replayed+uint64(len(batch))
		s.mu.Unlock()
		if len(batch) < s.cfg.BatchMax && s.cfg.Linger > 0 && !sleep(ctx, s.cfg.Linger) {
			break
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// read returns the entries after the cursor (at most BatchMax) and the
// offset just past them.
func (s *Spool) read() ([]Entry, int64, error) {
	s.mu.Lock()
	limit := int64(-1) // the reader's segment is complete
	if s.rseg == s.seg {
		limit = s.app.Size() // only lines synced under mu
	}
	s.mu.Unlock()
	path := filepath.Join(s.cfg.Dir, segName(s.rseg))
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, s.roff, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	if limit < 0 {
		st, err := f.Stat()
		if err != nil {
			return nil, 0, err
		}
		limit = st.Size()
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, s.roff, limit-s.roff), 256<<10)
	off := s.roff
	var out []Entry
	for len(out) < s.cfg.BatchMax {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			break // a partial line is not synced yet (or is being cut)
		}
		if err != nil {
			return nil, 0, err
		}
		off += int64(len(line))
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			// jsonl writes whole lines only; a line that does not
			// parse is damage: skip it rather than stop replaying.
			s.log.Error("spool: unreadable entry skipped", "file", path, "offset", off-int64(len(line)), "err", err)
			continue
		}
		if e.Seq <= s.doneSeq() {
			continue // committed before a cursor write was lost
		}
		out = append(out, e)
	}
	if len(out) == 0 && off != s.roff {
		s.roff = off // only skipped lines
	}
	return out, off, nil
}

func (s *Spool) doneSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// advanceSegment moves the reader past a fully replayed segment that is no
// longer appended to, deleting it. It reports whether it moved.
func (s *Spool) advanceSegment() bool {
	s.mu.Lock()
	cur, done := s.seg, s.done
	s.mu.Unlock()
	if s.rseg >= cur {
		return false
	}
	old := filepath.Join(s.cfg.Dir, segName(s.rseg))
	s.rseg, s.roff = s.rseg+1, 0
	if err := s.writeCursor(cursor{Segment: s.rseg, Offset: 0, Seq: done}); err != nil {
		s.log.Error("spool: cursor not saved", "err", err)
	}
	if err := os.Remove(old); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("spool: removing a replayed segment", "file", old, "err", fmt.Sprint(err))
	}
	return true
}
