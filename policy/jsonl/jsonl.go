// Package jsonl appends whole lines to a file and never leaves a partial
// one behind: the audit trail and the accounting file use it so that every
// line in them parses, whatever happened to the disk.
//
// An Appender remembers the offset of the end of the last whole line it
// wrote and of the last one it synced. A write that fails (ENOSPC, EIO, a
// short write) is rolled back by truncating the file to the end of the last
// whole line; a sync that fails rolls back to the end of the last synced
// line, since what was written after it may not be on disk. The error is
// returned and nothing else changes: the next Append simply tries again, so
// writing resumes by itself when space returns.
//
// Open repairs a file that ends in the middle of a line (a crash or power
// loss during a write): the partial tail, which was never acknowledged
// since acknowledgement follows a sync of whole lines, is copied to
// path+".partial" (kept, not destroyed; if even that fails, say on a full
// disk, it is cut all the same and QuarantineErr says why) and cut from the
// file, so the next line starts on a line of its own and every line parses.
//
// Writes go to the offset the Appender tracks (pwrite), not O_APPEND, so
// the file must not be truncated behind its back (logrotate's copytruncate):
// rotate by renaming the file and opening a new Appender.
//
// It imports only the standard library. An Appender is not safe for
// concurrent use; its caller serializes.
package jsonl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// File is what an Appender writes to; *os.File implements it. Tests inject
// failing ones.
type File interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Sync() error
	Close() error
	Stat() (os.FileInfo, error)
}

// Appender appends whole lines to one file.
type Appender struct {
	f    File
	name string
	off  int64 // end of the last whole line written
	sync int64 // end of the last whole line synced
	// dirty is set when a rollback's truncate failed: the file may hold
	// bytes past off, and is truncated before the next write.
	dirty bool
	cut   int64 // bytes of a partial last line removed by Open
	qerr  error // why the removed bytes could not be copied, if so
}

// Open opens (creating it with perm if needed) the file at path for
// appending and repairs a partial last line (see the package doc).
func Open(path string, perm os.FileMode) (*Appender, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, perm)
	if err != nil {
		return nil, fmt.Errorf("jsonl: %w", err)
	}
	a, err := New(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return a, nil
}

// New returns an Appender writing to f, which it owns from now on; name is
// used in errors and for the ".partial" file (empty: the partial tail is
// cut without a copy). It repairs a partial last line as Open does.
func New(f File, name string) (*Appender, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("jsonl: %s: %w", name, err)
	}
	size := st.Size()
	end, err := lastLineEnd(f, size)
	if err != nil {
		return nil, fmt.Errorf("jsonl: %s: %w", name, err)
	}
	a := &Appender{f: f, name: name, off: end, sync: end}
	if end < size {
		if name != "" {
			// A full disk must not keep the file from opening: the tail
			// was never acknowledged, and is cut even if no copy can be
			// kept (QuarantineErr says so).
			a.qerr = quarantine(f, name+".partial", end, size)
		}
		if err := f.Truncate(end); err != nil {
			return nil, fmt.Errorf("jsonl: %s: cutting the partial last line: %w", name, err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("jsonl: %s: %w", name, err)
		}
		a.cut = size - end
	}
	return a, nil
}

// lastLineEnd returns the offset just past the last '\n' in f's first size
// bytes (0 if there is none).
func lastLineEnd(f io.ReaderAt, size int64) (int64, error) {
	var buf [4096]byte
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && !(errors.Is(err, io.EOF) && start+int64(len(b)) == size) {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// quarantine appends f's bytes [from, to) and a newline to the file at
// path, and syncs it.
func quarantine(f io.ReaderAt, path string, from, to int64) error {
	tail := make([]byte, to-from, to-from+1)
	if _, err := f.ReadAt(tail, from); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	q, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	_, err = q.Write(append(tail, '\n'))
	if err == nil {
		err = q.Sync()
	}
	return errors.Join(err, q.Close())
}

// Cut is the number of bytes of a partial last line that Open removed
// (and copied to the ".partial" file); 0 if the file ended in a newline.
func (a *Appender) Cut() int64 { return a.cut }

// QuarantineErr is the error that kept Open from copying the partial last
// line it cut to the ".partial" file, or nil.
func (a *Appender) QuarantineErr() error { return a.qerr }

// Size is the offset just past the last whole line written.
func (a *Appender) Size() int64 { return a.off }

// Unsynced is the number of bytes written but not yet synced.
func (a *Appender) Unsynced() int64 { return a.off - a.sync }

// ErrNotLines is returned by Append for data that does not end in '\n'.
var ErrNotLines = errors.New("jsonl: data does not end with a newline")

// Append writes lines, one or more whole lines each ending in '\n', after
// the last whole line. On error nothing of lines stays in the file.
func (a *Appender) Append(lines []byte) error {
	if len(lines) == 0 {
		return nil
	}
	if lines[len(lines)-1] != '\n' {
		return ErrNotLines
	}
	if a.dirty {
		if err := a.f.Truncate(a.off); err != nil {
			return fmt.Errorf("jsonl: %s: truncate: %w", a.name, err)
		}
		a.dirty = false
	}
	n, err := a.f.WriteAt(lines, a.off)
	if err == nil && n < len(lines) {
		err = io.ErrShortWrite
	}
	if err != nil {
		a.rollback(a.off)
		return fmt.Errorf("jsonl: %s: write: %w", a.name, err)
	}
	a.off += int64(n)
	return nil
}

// Sync makes the lines written so far durable. On error the lines written
// since the last successful Sync are removed (they may not be on disk).
func (a *Appender) Sync() error {
	if a.dirty {
		if err := a.f.Truncate(a.off); err != nil {
			return fmt.Errorf("jsonl: %s: truncate: %w", a.name, err)
		}
		a.dirty = false
	}
	if a.off == a.sync {
		return nil
	}
	if err := a.f.Sync(); err != nil {
		a.rollback(a.sync)
		return fmt.Errorf("jsonl: %s: fsync: %w", a.name, err)
	}
	a.sync = a.off
	return nil
}

// rollback truncates the file to off; if that fails the next Append tries
// again before writing.
func (a *Appender) rollback(off int64) {
	a.off = off
	a.dirty = a.f.Truncate(off) != nil
}

// Close syncs and closes the file. The Appender must not be used after.
func (a *Appender) Close() error {
	err := a.Sync()
	return errors.Join(err, a.f.Close())
}
