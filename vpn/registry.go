package vpn

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// record is one enrolled certificate and its WireGuard peer, in memory.
// Its stored form is a PeerRecord (see record.go). The address lease lives
// in the record: a lease exists exactly as long as the record does.
type record struct {
	Fingerprint string // SHA-256 of the leaf, lowercase hex
	CertSerial  string
	Identity    string // for display: the identity's name
	IdentityKey string // kind/field/name: counts toward the per-identity limit
	NotAfter    time.Time
	Chain       [][]byte // DER, leaf first, for re-validation
	PublicKey   Key
	Address     netip.Addr
	Address6    netip.Addr
	Rule        string
	Access      *policy.VPNAccess
	Enrolled    time.Time
	Updated     time.Time
	Validated   time.Time
	Suspended   *Suspension // nil: on the device and in the filter

	offset uint32              // lease offset in the pool
	seen   time.Time           // when this node last took the record in (enroll, change, replication)
	certs  []*x509.Certificate // parsed Chain, lazily
}

func (r *record) stored() *PeerRecord {
	return &PeerRecord{
		Version: RecordVersion, Fingerprint: r.Fingerprint, CertSerial: r.CertSerial, Identity: r.Identity,
		IdentityKey: r.IdentityKey, NotAfter: r.NotAfter, Chain: r.Chain, PublicKey: r.PublicKey,
		Address: r.Address, Address6: r.Address6, Rule: r.Rule, Access: grantOf(r.Access),
		Enrolled: r.Enrolled, Updated: r.Updated, Validated: r.Validated, Suspended: r.Suspended,
	}
}

func recordOf(p *PeerRecord) *record {
	return &record{
		Fingerprint: p.Fingerprint, CertSerial: p.CertSerial, Identity: p.Identity,
		IdentityKey: p.IdentityKey, NotAfter: p.NotAfter, Chain: p.Chain, PublicKey: p.PublicKey,
		Address: p.Address, Address6: p.Address6, Rule: p.Rule, Access: p.Access.access(),
		Enrolled: p.Enrolled, Updated: p.Updated, Validated: p.Validated, Suspended: p.Suspended,
	}
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

// store is the registry's view of its Store: it converts records, and at
// load resolves conflicts, quarantining the losers, and counts quarantines.
type store struct {
	Store
	log         *slog.Logger
	quarantined atomic.Uint64
}

func newStore(st Store, log *slog.Logger) *store { return &store{Store: st, log: log} }

func (st *store) save(r *record) error { return st.Save(r.stored()) }

// saveNew writes the record of a new certificate; a LimitedStore checks
// the per-identity limit in the same atomic step (a *LimitError).
func (st *store) saveNew(r *record, limit int) error {
	if ls, ok := st.Store.(LimitedStore); ok {
		return ls.SaveNew(r.stored(), limit)
	}
	return st.Save(r.stored())
}

func (st *store) remove(fp string) error { return st.Remove(fp) }

// quarantine moves a record aside, logging ERROR and counting it.
func (st *store) quarantine(fp, why string) {
	st.quarantined.Add(1)
	if err := st.Quarantine(fp, why); err != nil {
		st.log.Error("vpn: stored peer could not be quarantined", "fingerprint", fp, "why", why, "err", err)
		return
	}
	st.log.Error("vpn: stored peer quarantined (kept aside, not loaded)", "fingerprint", fp, "why", why)
}

// load reads every record and claims its lease in p. Records that cannot
// be decoded, are out of the pool, or claim an address or key another
// record holds (the older one loses) are quarantined and logged, never
// deleted: their leases are free again.
func (st *store) load(p *pool) (map[string]*record, error) {
	stored, bad, err := st.Load()
	if err != nil {
		return nil, err
	}
	for _, q := range bad {
		st.quarantined.Add(1)
		st.log.Error("vpn: stored peer unreadable; quarantined (kept aside, not loaded)", "file", q.Name, "why", q.Why)
	}
	recs := make(map[string]*record, len(stored))
	accesses := make(map[string]*policy.VPNAccess) // share identical accesses
	for _, sr := range stored {
		r := recordOf(sr)
		fp := r.Fingerprint
		o, ok := p.offset(r.Address)
		if !ok {
			st.quarantine(fp, "address outside the pool")
			continue
		}
		if holder, taken := p.used[o]; taken {
			other := recs[holder]
			if other.Updated.After(r.Updated) {
				st.quarantine(fp, "address held by another peer")
				continue
			}
			st.quarantine(other.Fingerprint, "address held by another peer")
			delete(recs, holder)
			p.release(o)
		}
		if !p.claim(o, fp) {
			st.quarantine(fp, "address not leasable")
			continue
		}
		r.offset = o
		r.Address, r.Address6 = p.addrs(o)
		if r.Access != nil {
			k, _ := json.Marshal(sr.Access)
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
	for _, r := range recs {
		if o, dup := byKey[r.PublicKey]; dup {
			loser := r
			if r.Updated.After(o.Updated) {
				loser = o
				byKey[r.PublicKey] = r
			}
			st.quarantine(loser.Fingerprint, "public key held by another peer")
			p.release(loser.offset)
			delete(recs, loser.Fingerprint)
			continue
		}
		byKey[r.PublicKey] = r
	}
	return recs, nil
}
