package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/vpn"
	"github.com/gatehouse/gatehouse/vpn/vpntest"
)

// Many enrollments of one identity at the same instant, through two nodes
// (two pools on one database): exactly limit succeed, the others are
// refused with a *vpn.LimitError, and the database never holds more than
// limit devices of the identity. Without the per-identity lock the count
// and the insert race and more than limit get in.
func TestSaveNewDeviceLimitAcrossNodes(t *testing.T) {
	pg := pgtest.Start(t)
	const limit, perNode, rounds = 3, 12, 5
	for round := range rounds {
		open := newDB(t, pg)
		nodes := []*Store{New(open(), Config{Site: "hq", Node: "a"}, nil), New(open(), Config{Site: "hq", Node: "b"}, nil)}
		// Warm both pools so the enrollments really start together.
		for _, n := range nodes {
			var wg sync.WaitGroup
			for range perNode {
				wg.Add(1)
				go func() { defer wg.Done(); n.db.Pool().Exec(context.Background(), "SELECT 1") }()
			}
			wg.Wait()
		}
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			ok, lim int
			other   []error
		)
		start := make(chan struct{})
		for i := range 2 * perNode {
			r := vpntest.Record(t, round*1000+i, fmt.Sprintf("100.96.%d.%d", i/200, 2+i%200))
			r.IdentityKey = "user/upn/alice"
			st := nodes[i%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				err := st.SaveNew(r, limit)
				var le *vpn.LimitError
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case errors.As(err, &le):
					lim++
					if le.Count < limit {
						other = append(other, fmt.Errorf("refused with count %d < limit", le.Count))
					}
				default:
					other = append(other, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(other) > 0 {
			t.Fatalf("round %d: unexpected errors: %v", round, other)
		}
		var stored int
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := nodes[0].db.Pool().QueryRow(ctx, "SELECT count(*) FROM vpn_peers WHERE identity_key = 'user/upn/alice'").Scan(&stored)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if ok != limit || stored != limit || lim != 2*perNode-limit {
			t.Fatalf("round %d: %d enrollments succeeded, %d refused, %d stored; want %d, %d, %d",
				round, ok, lim, stored, limit, 2*perNode-limit, limit)
		}
	}
}

// The limit counts live devices only: an expired certificate's peer, a
// quarantined row and the record's own fingerprint (a re-enrollment) do
// not take a slot; another identity's devices do not either.
func TestSaveNewCountsLiveDevicesOfTheIdentity(t *testing.T) {
	pg := pgtest.Start(t)
	st := New(newDB(t, pg)(), Config{Site: "hq", Node: "a"}, nil)
	rec := func(i int, id string, notAfter time.Time) *vpn.PeerRecord {
		r := vpntest.Record(t, i, fmt.Sprintf("100.96.0.%d", 2+i))
		r.IdentityKey, r.NotAfter = id, notAfter
		return r
	}
	future, past := time.Now().Add(time.Hour).UTC(), time.Now().Add(-time.Hour).UTC()
	for _, r := range []*vpn.PeerRecord{rec(1, "a", future), rec(2, "a", past), rec(3, "b", future), rec(4, "a", future)} {
		if err := st.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Quarantine(vpntest.FP(4), "test"); err != nil {
		t.Fatal(err)
	}
	// Live devices of "a": only 1.
	if err := st.SaveNew(rec(5, "a", future), 2); err != nil {
		t.Fatalf("second device refused: %v", err)
	}
	var le *vpn.LimitError
	if err := st.SaveNew(rec(6, "a", future), 2); !errors.As(err, &le) || le.Count != 2 {
		t.Fatalf("third device: err = %v, want a LimitError with count 2", err)
	}
	// Re-saving an enrolled fingerprint through SaveNew is no new device.
	if err := st.SaveNew(rec(5, "a", future), 2); err != nil {
		t.Fatalf("re-enrollment refused: %v", err)
	}
}
