package vpn

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testStoreContract is what every Store backend must do; each backend's
// test runs it with a fresh, empty store.
func testStoreContract(t *testing.T, fresh func(t *testing.T) Store) {
	mk := func(i int, addr string) *PeerRecord {
		return &PeerRecord{Fingerprint: fp(i), Identity: "u", PublicKey: newPub(t), Address: netip.MustParseAddr(addr),
			Access: grantOf(engineeringAccess), NotAfter: time.Unix(2e9, 0).UTC()}
	}
	t.Run("save load remove", func(t *testing.T) {
		st := fresh(t)
		a, b := mk(1, "100.96.0.2"), mk(2, "100.96.0.3")
		b.Suspended = &Suspension{Since: time.Unix(1e9, 0).UTC(), Code: "no_rule", Reason: "r"}
		for _, r := range []*PeerRecord{a, b} {
			if err := st.Save(r); err != nil {
				t.Fatal(err)
			}
		}
		a.Rule = "changed"
		if err := st.Save(a); err != nil { // overwrite
			t.Fatal(err)
		}
		recs, bad, err := st.Load()
		if err != nil || len(bad) != 0 || len(recs) != 2 {
			t.Fatalf("Load: %d records, bad %v, %v", len(recs), bad, err)
		}
		for _, r := range recs {
			switch r.Fingerprint {
			case fp(1):
				if r.Rule != "changed" || r.Suspended != nil {
					t.Errorf("a: %+v", r)
				}
			case fp(2):
				if r.Suspended == nil || r.Suspended.Code != "no_rule" || !sameAccess(r.Access.access(), engineeringAccess) {
					t.Errorf("b: %+v", r)
				}
			}
		}
		if err := st.Remove(fp(1)); err != nil {
			t.Fatal(err)
		}
		if err := st.Remove(fp(1)); err != nil { // missing: no error
			t.Fatal(err)
		}
		if recs, _, _ := st.Load(); len(recs) != 1 || recs[0].Fingerprint != fp(2) {
			t.Fatalf("after Remove: %v", recs)
		}
	})
	t.Run("quarantine", func(t *testing.T) {
		st := fresh(t)
		if err := st.Save(mk(3, "100.96.0.4")); err != nil {
			t.Fatal(err)
		}
		if err := st.Quarantine(fp(3), "test"); err != nil {
			t.Fatal(err)
		}
		if recs, _, _ := st.Load(); len(recs) != 0 {
			t.Fatalf("quarantined record still loads: %v", recs)
		}
	})
}

func TestFileStoreContract(t *testing.T) {
	testStoreContract(t, func(t *testing.T) Store { return NewFileStore(t.TempDir()) })
}

// TestFileStoreReadErrorIsNoQuarantine: a file that cannot be read at all
// (permissions, I/O) fails the load instead of being moved aside.
func TestFileStoreReadErrorIsNoQuarantine(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files of mode 0")
	}
	dir := t.TempDir()
	st := NewFileStore(dir)
	if err := st.Save(&PeerRecord{Fingerprint: fp(1), PublicKey: newPub(t), Address: netip.MustParseAddr("100.96.0.2")}); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, fp(1)+".json"), 0)
	if _, _, err := st.Load(); err == nil || !errors.Is(err, os.ErrPermission) {
		t.Fatalf("Load: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, fp(1)+".json")); err != nil {
		t.Fatal("unreadable file moved")
	}
}
