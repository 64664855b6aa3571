package vpn

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/policy/atomicfile"
)

// Store persists the peer registry: one record per enrolled certificate,
// keyed by its fingerprint. The registry never deletes state it cannot
// read: a record that does not decode, or that loses a conflict at load,
// is quarantined (kept aside for an operator), never removed.
// FileStore is the embedded backend.
type Store interface {
	// Load returns every record that decodes. Records that do not are
	// quarantined by the store and listed in bad.
	Load() (recs []*PeerRecord, bad []Quarantined, err error)
	// Save writes r whole (atomically: a crash leaves the old or the new).
	Save(r *PeerRecord) error
	// Remove deletes the record of fingerprint fp; a missing one is no error.
	Remove(fp string) error
	// Quarantine moves the record of fp aside, with why for the operator.
	Quarantine(fp, why string) error
}

// Quarantined names a record a Store moved aside and why.
type Quarantined struct {
	Name string // the record's name in the store (a file name for FileStore)
	Why  string
}

// FileStore keeps each record in Dir/<fingerprint>.json, written
// atomically (temporary file, fsync, rename, fsync of the directory).
// Quarantined records go to Dir/quarantine/<name>.<UTC time>.
type FileStore struct {
	Dir string
}

// NewFileStore returns the file backend rooted at dir.
func NewFileStore(dir string) *FileStore { return &FileStore{Dir: dir} }

func (st *FileStore) path(fp string) string { return filepath.Join(st.Dir, fp+".json") }

// Save implements Store.
func (st *FileStore) Save(r *PeerRecord) error {
	b, err := EncodeRecord(r)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(st.path(r.Fingerprint), b, 0o600); err != nil {
		return fmt.Errorf("vpn: save peer: %w", err)
	}
	return nil
}

// Remove implements Store.
func (st *FileStore) Remove(fp string) error {
	if err := os.Remove(st.path(fp)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("vpn: remove peer: %w", err)
	}
	if err := atomicfile.SyncDir(st.Dir); err != nil {
		return fmt.Errorf("vpn: remove peer: %w", err)
	}
	return nil
}

// Quarantine implements Store.
func (st *FileStore) Quarantine(fp, why string) error {
	return st.quarantineFile(fp + ".json")
}

func (st *FileStore) quarantineFile(name string) error {
	qdir := filepath.Join(st.Dir, "quarantine")
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		return fmt.Errorf("vpn: quarantine %s: %w", name, err)
	}
	to := filepath.Join(qdir, name+"."+time.Now().UTC().Format("20060102T150405.000000000Z"))
	if err := os.Rename(filepath.Join(st.Dir, name), to); err != nil {
		return fmt.Errorf("vpn: quarantine %s: %w", name, err)
	}
	if err := atomicfile.SyncDir(qdir); err != nil {
		return fmt.Errorf("vpn: quarantine %s: %w", name, err)
	}
	if err := atomicfile.SyncDir(st.Dir); err != nil {
		return fmt.Errorf("vpn: quarantine %s: %w", name, err)
	}
	return nil
}

// Load implements Store. Leftover temporary files of an interrupted write
// are removed (they were never acknowledged); a file that cannot be read
// at all (I/O error, permissions) is an error, not a quarantine.
func (st *FileStore) Load() ([]*PeerRecord, []Quarantined, error) {
	if err := os.MkdirAll(st.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("vpn: state: %w", err)
	}
	recs, bad, err := st.read(true)
	if err != nil {
		return nil, nil, err
	}
	var moved []Quarantined
	for _, q := range bad {
		if err := st.quarantineFile(q.Name); err != nil {
			return nil, nil, err
		}
		moved = append(moved, q)
	}
	return recs, moved, nil
}

// Read returns the records and the undecodable files without changing
// anything (for `gatehouse peers` while a server runs).
func (st *FileStore) Read() ([]*PeerRecord, []Quarantined, error) { return st.read(false) }

func (st *FileStore) read(clean bool) ([]*PeerRecord, []Quarantined, error) {
	ents, err := os.ReadDir(st.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("vpn: state: %w", err)
	}
	var names []string
	for _, e := range ents {
		name := e.Name()
		if clean && strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp") {
			os.Remove(filepath.Join(st.Dir, name))
			continue
		}
		if fp, ok := strings.CutSuffix(name, ".json"); ok && validFingerprint(fp) && e.Type().IsRegular() {
			names = append(names, name)
		}
	}
	// Read and decode in parallel, keep name order.
	type result struct {
		r   *PeerRecord
		why string
		err error
	}
	results := make([]result, len(names))
	workers := max(1, min(runtime.GOMAXPROCS(0), 8))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(names); i += workers {
				b, err := os.ReadFile(filepath.Join(st.Dir, names[i]))
				if err != nil {
					results[i].err = fmt.Errorf("vpn: state: %w", err)
					continue
				}
				r, err := DecodeRecord(b)
				switch {
				case err != nil:
					results[i].why = err.Error()
				case r.Fingerprint+".json" != names[i]:
					results[i].why = "fingerprint does not match the file name"
				default:
					results[i].r = r
				}
			}
		}()
	}
	wg.Wait()
	var recs []*PeerRecord
	var bad []Quarantined
	for i, res := range results {
		switch {
		case res.err != nil:
			return nil, nil, res.err
		case res.r == nil:
			bad = append(bad, Quarantined{Name: names[i], Why: res.why})
		default:
			recs = append(recs, res.r)
		}
	}
	return recs, bad, nil
}

// ErrConflict is matched (errors.Is) by the error a shared Store's Save
// returns when another node holds what the record claims: its address, or
// its public key. The *ConflictError says which.
var ErrConflict = errors.New("vpn: store: held by another peer")

// ErrUnavailable is matched by the error a shared Store returns when it
// cannot reach its database: the change was not made; try again later.
var ErrUnavailable = errors.New("vpn: store: unavailable")

// ConflictError is a Save refused because another record holds Field
// ("address" or "public_key") in the store.
type ConflictError struct{ Field string }

func (e *ConflictError) Error() string { return "vpn: store: " + e.Field + " held by another peer" }

// Is makes errors.Is(err, ErrConflict) hold.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// LimitedStore is a shared Store that can check the per-identity device
// limit and write a new record in one atomic step across nodes. A node's
// own count can be stale (two nodes enrolling one identity at the same
// instant would each see room for one more); enrollment of a new
// certificate goes through SaveNew when the Store has it.
type LimitedStore interface {
	// SaveNew writes r like Save unless limit or more records of
	// r.IdentityKey other than r.Fingerprint itself, unexpired (NotAfter
	// zero or in the future) and not quarantined, are stored: then it
	// writes nothing and returns a *LimitError.
	SaveNew(r *PeerRecord, limit int) error
}

// LimitError is a SaveNew refused because the identity already has Count
// devices enrolled (Count >= the limit).
type LimitError struct{ Count int }

func (e *LimitError) Error() string {
	return fmt.Sprintf("vpn: store: device limit reached: %d devices enrolled", e.Count)
}
