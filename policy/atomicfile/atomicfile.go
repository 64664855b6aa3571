// Package atomicfile replaces whole files atomically and durably: the
// state gatehouse keeps on disk (VPN keys, peers and recent handshakes, the
// PostgreSQL registry's cache, cached CRLs, the Wi-Fi sessions of the file
// store, the spool's cursor) is written through it, so that a crash or a
// full disk leaves either the old file or the new one, never a mix.
//
// It imports only the standard library (policy/revocation, store and vpn
// all use it).
package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with data, mode perm: it writes a temporary file in
// the same directory (named "."+base+".tmp…", so that a crash's leftover
// is recognizable), fsyncs it, renames it over path and fsyncs the
// directory. On failure the temporary file is removed and path is as it
// was, unless only the directory's fsync failed (then path may hold either
// version). The directory must exist.
func Write(path string, data []byte, perm os.FileMode) error {
	return place(path, data, perm, os.Rename)
}

// Create is Write that never replaces: if path exists it fails with an
// error matching fs.ErrExist and leaves path as it was. The check and the
// creation are one step (a hard link of the written temporary file), so
// of two concurrent Creates exactly one succeeds; on a file system without
// hard links it checks, then renames.
func Create(path string, data []byte, perm os.FileMode) error {
	return place(path, data, perm, func(tmp, path string) error {
		err := os.Link(tmp, path)
		if err == nil || errors.Is(err, fs.ErrExist) {
			if err == nil {
				os.Remove(tmp)
			}
			return err
		}
		if _, serr := os.Lstat(path); serr == nil {
			return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
		}
		return os.Rename(tmp, path)
	})
}

// place writes data to a durable temporary file beside path and puts it
// at path with put; the temporary file is removed unless put succeeded.
func place(path string, data []byte, perm os.FileMode, put func(tmp, path string) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	placed := false
	defer func() {
		if !placed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := put(tmp, path); err != nil {
		return err
	}
	placed = true
	return SyncDir(dir)
}

// SyncDir fsyncs the directory dir, making the creation, renaming or
// removal of its entries durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
