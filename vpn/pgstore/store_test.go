package pgstore

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/store/postgres"
	"github.com/gatehouse/gatehouse/vpn"
	"github.com/gatehouse/gatehouse/vpn/vpntest"
	"github.com/jackc/pgx/v5"
)

var dbSeq atomic.Int64

// newDB returns a fresh migrated database on pg and a function opening
// one more pool on it (one per node).
func newDB(t *testing.T, pg *pgtest.Server) func() *postgres.DB {
	dsn := pg.CreateDatabase(fmt.Sprintf("gh_vpn_%d", dbSeq.Add(1)))
	open := func() *postgres.DB {
		db, err := postgres.Open(postgres.Config{DSN: dsn, MaxConns: 8}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		return db
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := open().Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return open
}

// PostgreSQL passes the one store contract; its shared-lease cases run
// with two nodes (two pools) on one database.
func TestPostgresStoreContract(t *testing.T) {
	pg := pgtest.Start(t)
	vpntest.StoreContract(t, vpntest.Backend{
		Fresh: func(t *testing.T) vpn.Store { return New(newDB(t, pg)(), Config{Site: "hq", Node: "a"}, nil) },
		Nodes: func(t *testing.T, n int) []vpn.Store {
			open := newDB(t, pg)
			var out []vpn.Store
			for i := range n {
				out = append(out, New(open(), Config{Site: "hq", Node: fmt.Sprint("node", i)}, nil))
			}
			return out
		},
	})
}

// BenchmarkLoad100k reads a site of 100,000 peers (realistic records: a
// two-certificate chain each) from PostgreSQL and decodes them: the
// registry load of a node's start and of every full resync.
func BenchmarkLoad100k(b *testing.B) {
	const n = 100000
	pg := pgtest.Start(b)
	dsn := pg.CreateDatabase("gh_load")
	db, err := postgres.Open(postgres.Config{DSN: dsn}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	chain := [][]byte{make([]byte, 600), make([]byte, 550)} // the size of a P-256 leaf and intermediate
	rand.Read(chain[0])
	rand.Read(chain[1])
	base := vpntest.Record(b, 1, "100.96.0.2")
	rows := make([][]any, 0, n)
	for i := range n {
		r := *base // as Save writes it: the chain in its own column
		r.Fingerprint = vpntest.FP(i)
		rand.Read(r.PublicKey[:])
		o := uint32(i + 2)
		r.Address = netip.AddrFrom4([4]byte{100, 96 + byte(o>>16), byte(o >> 8), byte(o)})
		r.Chain = nil
		enc, _ := vpn.EncodeRecord(&r)
		rows = append(rows, []any{"hq", r.Fingerprint, r.PublicKey.String(), r.Address.String(), r.IdentityKey, r.NotAfter, false, 1, enc, packChain(chain)})
	}
	if _, err := db.Pool().CopyFrom(ctx, pgx.Identifier{"vpn_peers"},
		[]string{"site", "fingerprint", "public_key", "address", "identity_key", "not_after", "suspended", "format", "record", "chain"},
		pgx.CopyFromRows(rows)); err != nil {
		b.Fatal(err)
	}
	st := New(db, Config{Site: "hq"}, nil)
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c0 := cpu()
	b.ResetTimer()
	defer func() { b.ReportMetric((cpu()-c0).Seconds()/float64(b.N), "cpu-s/load") }()
	for range b.N {
		recs, bad, err := st.Load()
		if err != nil || len(bad) != 0 || len(recs) != n {
			b.Fatalf("%d records, %d bad, %v", len(recs), len(bad), err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/load")
}

// The local cache round-trips the registry, is private (0600), and is
// refused for another site.
func TestCacheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache")
	recs := []*vpn.PeerRecord{vpntest.Record(t, 1, "100.96.0.2"), vpntest.Record(t, 2, "100.96.0.3")}
	if err := writeCache(path, "hq", recs); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v %v", fi, err)
	}
	got, err := New(nil, Config{Site: "hq", Cache: path}, nil).readCache()
	if err != nil || len(got) != 2 || got[1].PublicKey != recs[1].PublicKey {
		t.Fatalf("read back: %v, %v", got, err)
	}
	if _, err := New(nil, Config{Site: "branch", Cache: path}, nil).readCache(); err == nil {
		t.Fatal("another site's cache accepted")
	}
}
