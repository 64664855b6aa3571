package vpn

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gatehouse/gatehouse/policy/atomicfile"
)

// The server's WireGuard private key. Every enrolled client's config names
// its public key, so a server that silently came up with another key would
// break every tunnel at once (and, on a multi-node site sharing one key
// file, one node would differ from the others). Run therefore generates a
// key only on a first install: the file is the StateDir default (not
// PrivateKeyFile) and the registry holds no peer. Anything else that is
// not a readable, well-formed key is refused with a *KeyError; a new key
// is made deliberately, with WriteKeyFile (`gatehouse vpn genkey`).

// KeyFileName is the key's file in StateDir when PrivateKeyFile is empty.
const KeyFileName = "wg.key"

// KeyPath returns the file holding the server's private key and whether
// the configuration names it (PrivateKeyFile) rather than defaulting to
// StateDir/wg.key.
func (c *Config) KeyPath() (path string, explicit bool) {
	if c.PrivateKeyFile != "" {
		return c.PrivateKeyFile, true
	}
	return filepath.Join(c.StateDir, KeyFileName), false
}

// KeyError is a private key file Run refuses to use, or refuses to create.
type KeyError struct {
	Path     string // the key file
	Explicit bool   // named by private_key_file, not the StateDir default
	// Err is what is wrong with the file: it matches fs.ErrNotExist when
	// the file is missing, fs.ErrPermission when it cannot be read.
	Err error
	// Peers is the number of peer records (active or suspended) in the
	// registry, counted when the file is missing; -1 if the registry could
	// not be read (RegistryErr says why).
	Peers       int
	RegistryErr error
}

// Unwrap returns Err.
func (e *KeyError) Unwrap() error { return e.Err }

// Missing reports whether the key file does not exist.
func (e *KeyError) Missing() bool { return errors.Is(e.Err, fs.ErrNotExist) }

func (e *KeyError) Error() string {
	// "vpn: private_key_file: …" reads as the key's error in cmd's
	// messages (vpn.private_key_file, with its line).
	head := "vpn: private_key_file: " + e.Path
	if !e.Explicit {
		head = "vpn: private key " + e.Path + " (the default in [server] state_dir, [vpn] private_key_file not set)"
	}
	const genkey = `deliberately create a new key with "gatehouse vpn genkey`
	const reenroll = " (every VPN client must then re-enroll)"
	if !e.Missing() {
		return fmt.Sprintf("%s: %v: refusing to start (a key file is never generated over); restore the key file from backup, or %s --force\"%s",
			head, e.Err, genkey, reenroll)
	}
	switch {
	case e.Peers > 0:
		return fmt.Sprintf("%s: missing, but the peer registry holds %d enrolled %s (active or suspended) whose configs name this server's public key, "+
			"and a new key would break every tunnel: refusing to start; restore the key file from backup, or %s\"%s",
			head, e.Peers, plural(e.Peers, "peer", "peers"), genkey, reenroll)
	case e.Peers < 0:
		return fmt.Sprintf("%s: missing, and the peer registry could not be read (%v), so whether clients hold the old key is unknown: "+
			"refusing to start; restore the key file from backup, or, if no client is enrolled, %s\"", head, e.RegistryErr, genkey)
	default: // explicit, empty registry
		return fmt.Sprintf("%s: missing, and a configured key file is never generated (is its volume mounted?): refusing to start; "+
			"restore the key file from backup or copy it from another node of the site, or %s\"", head, genkey)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// errZeroKey is an all-zero key file (a truncated or zeroed write).
var errZeroKey = errors.New("all zeros")

// ReadKeyFile reads a base64 private key from path and returns it with
// the file's permission bits. Errors name the path and never quote the
// file's contents.
func ReadKeyFile(path string) (Key, fs.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return Key{}, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Key{}, 0, err
	}
	if !fi.Mode().IsRegular() {
		return Key{}, 0, &fs.PathError{Op: "read", Path: path, Err: errors.New("not a regular file")}
	}
	b := make([]byte, 256) // a key is 44 characters and a newline
	n, err := f.Read(b)
	if err != nil && n == 0 && fi.Size() != 0 {
		return Key{}, 0, err
	}
	if n == len(b) {
		return Key{}, 0, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("not a WireGuard private key: too long (%w)", errBadKey)}
	}
	k, err := ParseKey(string(b[:n]))
	if err == nil && k.IsZero() {
		err = errZeroKey
	}
	if err != nil {
		return Key{}, 0, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("not a WireGuard private key (%w)", err)}
	}
	return k, fi.Mode().Perm(), nil
}

// WriteKeyFile generates a private key and writes it to path (atomically,
// mode 0600; a missing directory is made, mode 0700). An existing file is
// replaced only if replace is set (else the error matches fs.ErrExist).
func WriteKeyFile(path string, replace bool) (Key, error) {
	k, err := GenerateKey()
	if err != nil {
		return Key{}, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return Key{}, fmt.Errorf("vpn: write key: %w", err)
	}
	put := atomicfile.Create // the existence check and the creation in one step
	if replace {
		put = atomicfile.Write
	}
	if err := put(path, []byte(k.String()+"\n"), 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return Key{}, fmt.Errorf("vpn: write key: %s: %w", path, fs.ErrExist)
		}
		return Key{}, fmt.Errorf("vpn: write key: %w", err)
	}
	return k, nil
}

// PeerCounter is a Store that counts its records (quarantined ones
// included) without reading them whole and without changing anything.
type PeerCounter interface {
	CountPeers() (int, error)
}

// CountPeers implements PeerCounter: the record files, readable or not
// (a missing directory holds none).
func (st *FileStore) CountPeers() (int, error) {
	recs, bad, err := st.read(false)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return len(recs) + len(bad), nil
}

// countPeers counts the registry's records in the store (not those of
// this node's memory: Run calls it before restoring).
func (s *Server) countPeers() (int, error) {
	if pc, ok := s.store.Store.(PeerCounter); ok {
		return pc.CountPeers()
	}
	recs, bad, err := s.store.Store.Load()
	return len(recs) + len(bad), err
}

// CheckKey reports whether Run can use the server's private key: nil if
// the key file holds a well-formed key, or if it is the StateDir default,
// missing, and the registry holds no peer (Run then generates it: a first
// install). Otherwise it returns a *KeyError. It changes nothing; the
// registry is read only when the file is missing.
func (s *Server) CheckKey() error {
	_, _, _, err := s.readKey()
	return err
}

// readKey reads the key file; gen is set when the file is missing and Run
// may generate it.
func (s *Server) readKey() (k Key, perm fs.FileMode, gen bool, err error) {
	path, explicit := s.cfg.KeyPath()
	k, perm, err = ReadKeyFile(path)
	if err == nil {
		return k, perm, false, nil
	}
	ke := &KeyError{Path: path, Explicit: explicit, Err: unwrapPath(err)}
	if !ke.Missing() {
		return Key{}, 0, false, ke
	}
	ke.Peers, ke.RegistryErr = s.countPeers()
	if ke.RegistryErr != nil {
		ke.Peers = -1
	}
	if ke.Peers != 0 || explicit {
		return Key{}, 0, false, ke
	}
	return Key{}, 0, true, nil
}

// unwrapPath drops an *fs.PathError's operation and path (KeyError names
// the path once).
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// loadKey returns the server's private key, generating the StateDir
// default on a first install (see CheckKey).
func (s *Server) loadKey() (Key, error) {
	k, perm, gen, err := s.readKey()
	path, _ := s.cfg.KeyPath()
	if err != nil {
		return Key{}, err
	}
	if !gen {
		if perm&0o077 != 0 {
			s.log.Warn("vpn: private key file is readable by group or others; chmod 600 it",
				"file", path, "mode", fmt.Sprintf("%04o", perm))
		}
		return k, nil
	}
	if k, err = WriteKeyFile(path, false); err != nil {
		return Key{}, err
	}
	s.log.Info("vpn: first start: private key generated", "file", path, "public_key", k.Public().String())
	return k, nil
}
