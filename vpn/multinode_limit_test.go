package vpn_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/vpn"
)

// One person enrolls many devices at the same instant through two nodes
// of a site: exactly max_peers_per_identity (3 by default) enrollments
// succeed, every other one is refused with "device limit", and the
// registry holds 3 peers of that person (the database counts, under a
// per-identity lock, in the enrollment's transaction).
func TestTwoNodesDeviceLimitAtTheSameInstant(t *testing.T) {
	ca := vpn.NewTestCA(t)
	auth := &vpn.FakeAuth{}
	auth.Allow("dana")
	nodes, db := site(t, 2, auth, ca)
	const tries = 10
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ok, lim int
		other   []error
	)
	start := make(chan struct{})
	for i := range tries {
		cert := ca.Client(t, "dana")
		n := nodes[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := n.env.Enroll(cert)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case strings.Contains(err.Error(), "device limit"):
				lim++
			default:
				other = append(other, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	var stored int
	if err := db.Pool().QueryRow(t.Context(), "SELECT count(*) FROM vpn_peers WHERE identity_key = 'cn/dana'").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if len(other) > 0 || ok != 3 || lim != tries-3 || stored != 3 {
		t.Fatalf("%d enrolled, %d refused for the limit, %d stored, other errors %v; want 3, %d, 3, none", ok, lim, stored, other, tries-3)
	}
}
