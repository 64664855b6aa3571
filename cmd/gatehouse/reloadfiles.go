package main

import (
	"os"
	"slices"
	"syscall"
	"time"
)

// fileStat is what a stat says of a watched file: enough to see that it
// changed without opening it. A missing or unreadable file has err set.
type fileStat struct {
	name         string
	err          string
	ino          uint64
	size         int64
	mtime, ctime int64 // Unix nanoseconds
}

func statFile(name string) fileStat {
	fi, err := os.Stat(name)
	if err != nil {
		return fileStat{name: name, err: err.Error()}
	}
	st := fileStat{name: name, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = uint64(s.Ino)
		st.ctime = time.Unix(int64(s.Ctim.Sec), int64(s.Ctim.Nsec)).UnixNano()
	}
	return st
}

func statAll(names []string) []fileStat {
	out := make([]fileStat, len(names))
	for i, n := range names {
		out[i] = statFile(n)
	}
	return out
}

// signature is the state of every file a reload reads.
type signature struct {
	cfg   fileStat   // the config file
	dir   fileStat   // the directory's LDIF file (zero when none)
	trust []fileStat // the files the config names, read when it compiles
}

func (s signature) equal(o signature) bool {
	return s.cfg == o.cfg && s.dir == o.dir && s.sameTrust(o)
}

func (s signature) sameTrust(o signature) bool { return slices.Equal(s.trust, o.trust) }

// signature stats the watched files; it opens none.
func (r *reloader) signature() signature {
	s := signature{cfg: statFile(r.file), trust: statAll(trustFiles(r.watch))}
	if r.dirFile != "" {
		s.dir = statFile(r.dirFile)
	}
	return s
}

// trustFiles lists every file compiling l reads besides l itself.
func trustFiles(l *loaded) []string {
	t := &l.cfg.Trust
	files := []string{t.ServerCert, t.ServerKey}
	files = append(files, t.ClientCA...)
	files = append(files, t.Intermediates...)
	files = append(files, t.CRL...)
	for _, s := range t.CASource {
		files = append(files, s.CA)
	}
	for _, d := range l.cfg.Identity.Device {
		files = append(files, d.IssuerCA)
	}
	out := files[:0]
	for _, f := range files {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}
