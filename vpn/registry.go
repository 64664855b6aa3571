package vpn

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// record is one enrolled certificate and its WireGuard peer, as persisted in
// StateDir/peers/<fingerprint>.json. The address lease lives in the record:
// a lease exists exactly as long as its file does.
type record struct {
	Fingerprint string            `json:"fingerprint"` // SHA-256 of the leaf, lowercase hex
	CertSerial  string            `json:"cert_serial"`
	Identity    string            `json:"identity"`     // for display: the identity's name
	IdentityKey string            `json:"identity_key"` // kind/field/name: counts toward the per-identity limit
	NotAfter    time.Time         `json:"not_after"`
	Chain       [][]byte          `json:"chain"` // DER, leaf first, for re-validation
	PublicKey   Key               `json:"public_key"`
	Address     netip.Addr        `json:"address"`
	Address6    netip.Addr        `json:"address6,omitzero"`
	Rule        string            `json:"rule"`
	Access      *policy.VPNAccess `json:"access"`
	Enrolled    time.Time         `json:"enrolled"`
	Updated     time.Time         `json:"updated"`
	Validated   time.Time         `json:"validated"`

	offset uint32              // lease offset in the pool
	certs  []*x509.Certificate // parsed Chain, lazily
	cut    bool                // access suspended (transient authorization failure)
}

func (r *record) addrs() []netip.Addr {
	if r.Address6.IsValid() {
		return []netip.Addr{r.Address, r.Address6}
	}
	return []netip.Addr{r.Address}
}

func (r *record) chain() ([]*x509.Certificate, error) {
	if r.certs != nil {
		return r.certs, nil
	}
	certs := make([]*x509.Certificate, 0, len(r.Chain))
	for _, der := range r.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	r.certs = certs
	return certs, nil
}

func fingerprint(c *x509.Certificate) string {
	h := sha256.Sum256(c.Raw)
	return hex.EncodeToString(h[:])
}

func validFingerprint(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// sameAccess reports whether two accesses grant the same.
func sameAccess(a, b *policy.VPNAccess) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil {
		return false
	}
	return a.FullTunnel == b.FullTunnel && reflect.DeepEqual(a.Allow, b.Allow) &&
		reflect.DeepEqual(a.DNS, b.DNS) && reflect.DeepEqual(a.Routes, b.Routes)
}

// store persists records, one file each.
type store struct {
	dir string
	log *slog.Logger
}

func (st *store) path(fp string) string { return filepath.Join(st.dir, fp+".json") }

func (st *store) save(r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("vpn: save peer: %w", err)
	}
	if err := writeFileAtomic(st.path(r.Fingerprint), b, 0o600); err != nil {
		return fmt.Errorf("vpn: save peer: %w", err)
	}
	return nil
}

func (st *store) remove(fp string) error {
	if err := os.Remove(st.path(fp)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("vpn: remove peer: %w", err)
	}
	if err := syncDir(st.dir); err != nil {
		return fmt.Errorf("vpn: remove peer: %w", err)
	}
	return nil
}

// load reads every record and claims its lease in p. Files that cannot be
// read, are out of the pool, or claim an address another record holds (the
// older one loses) are deleted and logged: their leases are free again.
// Leftover temporary files of an interrupted write are removed.
func (st *store) load(p *pool) (map[string]*record, error) {
	if err := os.MkdirAll(st.dir, 0o700); err != nil {
		return nil, fmt.Errorf("vpn: state: %w", err)
	}
	ents, err := os.ReadDir(st.dir)
	if err != nil {
		return nil, fmt.Errorf("vpn: state: %w", err)
	}
	recs := make(map[string]*record, len(ents))
	accesses := make(map[string]*policy.VPNAccess) // share identical accesses
	drop := func(name, why string) {
		st.log.Warn("vpn: dropping stored peer", "file", name, "why", why)
		os.Remove(filepath.Join(st.dir, name))
	}
	// Read and decode in parallel; decide sequentially, in name order.
	type loaded struct {
		name string
		r    *record
		err  error
	}
	var names []string
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp") {
			os.Remove(filepath.Join(st.dir, name))
			continue
		}
		if fp, ok := strings.CutSuffix(name, ".json"); ok && validFingerprint(fp) {
			names = append(names, name)
		}
	}
	results := make([]loaded, len(names))
	workers := min(runtime.GOMAXPROCS(0), 8)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(names); i += workers {
				b, err := os.ReadFile(filepath.Join(st.dir, names[i]))
				if err != nil {
					results[i] = loaded{name: names[i], err: err}
					continue
				}
				r := new(record)
				if json.Unmarshal(b, r) != nil {
					r = nil
				}
				results[i] = loaded{name: names[i], r: r}
			}
		}()
	}
	wg.Wait()
	for _, res := range results {
		name, r := res.name, res.r
		if res.err != nil {
			return nil, fmt.Errorf("vpn: state: %w", res.err)
		}
		fp := strings.TrimSuffix(name, ".json")
		if r == nil || r.Fingerprint != fp || r.PublicKey.IsZero() {
			drop(name, "unreadable")
			continue
		}
		o, ok := p.offset(r.Address)
		if !ok {
			drop(name, "address outside the pool")
			continue
		}
		if holder, taken := p.used[o]; taken {
			other := recs[holder]
			if other.Updated.After(r.Updated) {
				drop(name, "address held by another peer")
				continue
			}
			drop(other.Fingerprint+".json", "address held by another peer")
			delete(recs, holder)
			p.release(o)
		}
		if !p.claim(o, fp) {
			drop(name, "address not leasable")
			continue
		}
		r.offset = o
		r.Address, r.Address6 = p.addrs(o)
		if r.Access != nil {
			k, _ := json.Marshal(r.Access)
			if a, ok := accesses[string(k)]; ok {
				r.Access = a
			} else {
				accesses[string(k)] = r.Access
			}
		}
		recs[fp] = r
	}
	// Two records with one public key: keep the newer.
	byKey := make(map[Key]*record, len(recs))
	for fp, r := range recs {
		if o, dup := byKey[r.PublicKey]; dup {
			loser := r
			if r.Updated.After(o.Updated) {
				loser = o
				byKey[r.PublicKey] = r
			}
			drop(loser.Fingerprint+".json", "public key held by another peer")
			p.release(loser.offset)
			delete(recs, loser.Fingerprint)
			_ = fp
			continue
		}
		byKey[r.PublicKey] = r
	}
	return recs, nil
}
