package pgstore

import (
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/store/postgres"
	"github.com/gatehouse/gatehouse/vpn"
	"github.com/gatehouse/gatehouse/vpn/vpntest"
)

// CountPeers (asked by a node whose WireGuard key file is missing) counts
// the site's records, suspended and quarantined ones included, and no
// other site's; a database not migrated yet holds none; during an outage
// it counts the local cache, and without one it says it cannot tell.
func TestCountPeers(t *testing.T) {
	pg := pgtest.Start(t)
	fresh, err := postgres.Open(postgres.Config{DSN: pg.CreateDatabase("gh_count_new"), MaxConns: 2}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fresh.Close)
	if n, err := New(fresh, Config{Site: "hq"}, nil).CountPeers(); n != 0 || err != nil {
		t.Fatalf("unmigrated database: %d, %v", n, err)
	}

	open := newDB(t, pg)
	hq := New(open(), Config{Site: "hq", Node: "a"}, nil)
	if n, err := hq.CountPeers(); n != 0 || err != nil {
		t.Fatalf("empty site: %d, %v", n, err)
	}
	for i, addr := range []string{"100.96.0.2", "100.96.0.3", "100.96.0.4"} {
		r := vpntest.Record(t, i+1, addr)
		if i == 1 {
			r.Suspended = &vpn.Suspension{Since: time.Now(), Code: "no_rule", Reason: "no rule matches"}
		}
		if err := hq.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := hq.Quarantine(vpntest.FP(3), "test"); err != nil {
		t.Fatal(err)
	}
	branch := New(open(), Config{Site: "branch", Node: "a"}, nil)
	if err := branch.Save(vpntest.Record(t, 9, "100.96.0.9")); err != nil {
		t.Fatal(err)
	}
	if n, err := hq.CountPeers(); n != 3 || err != nil {
		t.Fatalf("hq: %d, %v; want 3 (active, suspended, quarantined)", n, err)
	}

	// Unreachable: the cache's count, else an error.
	down, err := postgres.Open(postgres.Config{DSN: "postgres://gh@127.0.0.1:1/none?sslmode=disable", MaxConns: 1, ConnectTimeout: time.Second},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(down.Close)
	cache := filepath.Join(t.TempDir(), "cache")
	st := New(down, Config{Site: "hq", Cache: cache, OpTimeout: 3 * time.Second}, nil)
	if n, err := st.CountPeers(); !errors.Is(err, vpn.ErrUnavailable) {
		t.Fatalf("down, no cache: %d, %v", n, err)
	}
	recs, _, err := hq.Load()
	if err != nil {
		t.Fatal(err)
	}
	if err := writeCache(cache, "hq", recs); err != nil {
		t.Fatal(err)
	}
	if n, err := st.CountPeers(); n != 2 || err != nil {
		t.Fatalf("down, cached: %d, %v", n, err)
	}
}
