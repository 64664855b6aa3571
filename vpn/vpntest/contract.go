// Package vpntest holds the contract every vpn.Store backend passes: one
// suite, run by package vpn for the FileStore and by vpn/pgstore for
// PostgreSQL, so both backends are held to the same behaviour.
package vpntest

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/vpn"
)

// Backend describes a store under test.
type Backend struct {
	// Fresh returns an empty store.
	Fresh func(t *testing.T) vpn.Store
	// Nodes, for a shared backend, returns n stores of one site on one
	// fresh, empty database (n nodes). Nil for a single-node backend (the
	// file store): the node's own pool is then the only lease authority,
	// and the shared-lease cases are skipped.
	Nodes func(t *testing.T, n int) []vpn.Store
}

// FP returns a valid fingerprint for i.
func FP(i int) string { return fmt.Sprintf("%064x", i) }

// Record returns a complete record for fingerprint FP(i) at addr.
func Record(t testing.TB, i int, addr string) *vpn.PeerRecord {
	k, err := vpn.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1.9e9, 123456789).UTC()
	return &vpn.PeerRecord{
		Version: vpn.RecordVersion, Fingerprint: FP(i), CertSerial: fmt.Sprintf("%x", i), Identity: fmt.Sprintf("user%d", i),
		IdentityKey: fmt.Sprintf("user/upn/user%d", i), NotAfter: time.Unix(2e9, 0).UTC(), Chain: [][]byte{{1, 2, 3}},
		PublicKey: k.Public(), Address: netip.MustParseAddr(addr), Rule: "engineering",
		Access: &vpn.AccessGrant{Allow: []vpn.GrantDestination{{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Proto: 6, Ports: [][2]uint16{{443, 443}}}},
			DNS: []netip.Addr{netip.MustParseAddr("10.1.0.53")}},
		Enrolled: now, Updated: now, Validated: now,
	}
}

func encode(t testing.TB, r *vpn.PeerRecord) string {
	b, err := vpn.EncodeRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func loadMap(t testing.TB, st vpn.Store) map[string]*vpn.PeerRecord {
	t.Helper()
	recs, bad, err := st.Load()
	if err != nil || len(bad) != 0 {
		t.Fatalf("Load: bad %v, %v", bad, err)
	}
	m := make(map[string]*vpn.PeerRecord, len(recs))
	for _, r := range recs {
		m[r.Fingerprint] = r
	}
	return m
}

// StoreContract runs the suite against b.
func StoreContract(t *testing.T, b Backend) {
	t.Run("empty", func(t *testing.T) {
		if m := loadMap(t, b.Fresh(t)); len(m) != 0 {
			t.Fatalf("fresh store has %d records", len(m))
		}
	})
	t.Run("round trip", func(t *testing.T) {
		st := b.Fresh(t)
		a, s := Record(t, 1, "100.96.0.2"), Record(t, 2, "100.96.0.3")
		s.Address6 = netip.MustParseAddr("fd7a::3")
		s.Suspended = &vpn.Suspension{Since: time.Unix(1e9, 0).UTC(), Code: "no_rule", Reason: "r"}
		for _, r := range []*vpn.PeerRecord{a, s} {
			if err := st.Save(r); err != nil {
				t.Fatal(err)
			}
		}
		m := loadMap(t, st)
		for _, r := range []*vpn.PeerRecord{a, s} {
			got := m[r.Fingerprint]
			if got == nil || encode(t, got) != encode(t, r) {
				t.Errorf("loaded %+v\nwant   %+v", got, r)
			} else if got.Version != vpn.RecordVersion {
				t.Errorf("version %d", got.Version)
			}
		}
	})
	t.Run("overwrite", func(t *testing.T) {
		st := b.Fresh(t)
		a := Record(t, 1, "100.96.0.2")
		if err := st.Save(a); err != nil {
			t.Fatal(err)
		}
		a.Rule, a.Address = "changed", netip.MustParseAddr("100.96.0.9")
		k, _ := vpn.GenerateKey()
		a.PublicKey = k.Public()
		if err := st.Save(a); err != nil {
			t.Fatal(err)
		}
		m := loadMap(t, st)
		if len(m) != 1 || encode(t, m[a.Fingerprint]) != encode(t, a) {
			t.Fatalf("after overwrite: %v", m)
		}
		// The old address is free again.
		if err := st.Save(Record(t, 2, "100.96.0.2")); err != nil {
			t.Fatalf("old address not released: %v", err)
		}
	})
	t.Run("remove", func(t *testing.T) {
		st := b.Fresh(t)
		for i, a := range []string{"100.96.0.2", "100.96.0.3"} {
			if err := st.Save(Record(t, i+1, a)); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Remove(FP(1)); err != nil {
			t.Fatal(err)
		}
		if err := st.Remove(FP(1)); err != nil {
			t.Fatalf("removing a missing record: %v", err)
		}
		if m := loadMap(t, st); len(m) != 1 || m[FP(2)] == nil {
			t.Fatalf("after Remove: %v", m)
		}
	})
	t.Run("quarantine", func(t *testing.T) {
		st := b.Fresh(t)
		if err := st.Save(Record(t, 3, "100.96.0.4")); err != nil {
			t.Fatal(err)
		}
		if err := st.Quarantine(FP(3), "test"); err != nil {
			t.Fatal(err)
		}
		if m := loadMap(t, st); len(m) != 0 {
			t.Fatalf("quarantined record still loads: %v", m)
		}
	})
	t.Run("conflicts", func(t *testing.T) {
		if b.Nodes == nil {
			t.Skip("single-node backend: the node's pool is the lease authority")
		}
		n := b.Nodes(t, 2)
		a := Record(t, 1, "100.96.0.2")
		if err := n[0].Save(a); err != nil {
			t.Fatal(err)
		}
		var ce *vpn.ConflictError
		if err := n[1].Save(Record(t, 2, "100.96.0.2")); !errors.As(err, &ce) || ce.Field != "address" || !errors.Is(err, vpn.ErrConflict) {
			t.Fatalf("second lease of one address: %v", err)
		}
		six := Record(t, 3, "100.96.0.3")
		six.Address6 = netip.MustParseAddr("fd7a::3")
		if err := n[0].Save(six); err != nil {
			t.Fatal(err)
		}
		dup6 := Record(t, 4, "100.96.0.4")
		dup6.Address6 = six.Address6
		if err := n[1].Save(dup6); !errors.As(err, &ce) || ce.Field != "address" {
			t.Fatalf("second lease of one IPv6 address: %v", err)
		}
		k := Record(t, 5, "100.96.0.5")
		k.PublicKey = a.PublicKey
		if err := n[1].Save(k); !errors.As(err, &ce) || ce.Field != "public_key" {
			t.Fatalf("second peer with one public key: %v", err)
		}
		if m := loadMap(t, n[1]); len(m) != 2 {
			t.Fatalf("after refused saves: %d records", len(m))
		}
	})
	t.Run("concurrent nodes never lease one address twice", func(t *testing.T) {
		if b.Nodes == nil {
			t.Skip("single-node backend: the node's pool is the lease authority")
		}
		const nodes, each, space = 2, 40, 100
		st := b.Nodes(t, nodes)
		var mu sync.Mutex
		acked := map[string]string{} // fingerprint → address
		var wg sync.WaitGroup
		for n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				next := 2 + n*7 // each node starts elsewhere; they collide as they go
				for i := range each {
					id := 1 + n*each + i
					for {
						addr := fmt.Sprintf("100.96.0.%d", 2+(next%space))
						next++
						err := st[n].Save(Record(t, id, addr))
						if errors.Is(err, vpn.ErrConflict) {
							continue
						}
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						acked[FP(id)] = addr
						mu.Unlock()
						break
					}
				}
			}()
		}
		wg.Wait()
		m := loadMap(t, st[0])
		seen := map[netip.Addr]string{}
		for fp, r := range m {
			if o, dup := seen[r.Address]; dup {
				t.Errorf("address %s leased to %s and %s", r.Address, o, fp)
			}
			seen[r.Address] = fp
		}
		for fp, addr := range acked {
			if r := m[fp]; r == nil || r.Address.String() != addr {
				t.Errorf("acknowledged save of %s at %s lost: %v", fp, addr, r)
			}
		}
		if len(m) != nodes*each {
			t.Errorf("%d records, want %d", len(m), nodes*each)
		}
	})
}
