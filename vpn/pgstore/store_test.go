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

// seed100k returns a store of site hq holding n peers (realistic records:
// a two-certificate chain each), written with COPY.
func seed100k(b *testing.B, n int) *Store {
	pg := pgtest.Start(b)
	dsn := pg.CreateDatabase("gh_load")
	db, err := postgres.Open(postgres.Config{DSN: dsn}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(db.Close)
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
	if _, err := db.Pool().Exec(ctx, "VACUUM ANALYZE vpn_peers"); err != nil {
		b.Fatal(err)
	}
	return New(db, Config{Site: "hq"}, nil)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLoad100k reads a site of 100,000 peers from PostgreSQL and
// decodes them: the registry load of a node's start and of every full
// resync.
func BenchmarkLoad100k(b *testing.B) {
	const n = 100000
	st := seed100k(b, n)
	c0 := cpuTime()
	b.ResetTimer()
	defer func() { b.ReportMetric((cpuTime()-c0).Seconds()/float64(b.N), "cpu-s/load") }()
	for range b.N {
		recs, bad, err := st.Load()
		if err != nil || len(bad) != 0 || len(recs) != n {
			b.Fatalf("%d records, %d bad, %v", len(recs), len(bad), err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/load")
}

// BenchmarkResync100k is one periodic resync of a node at 100,000 peers
// (this process's CPU: the database server's is not counted), full (the
// only kind before schema 2; now after each connect, hourly and when the
// cache is due) and incremental with 10 peers changed since the last read
// (every ResyncEvery now).
func BenchmarkResync100k(b *testing.B) {
	const n, changed = 100000, 10
	st := seed100k(b, n)
	ctx := context.Background()
	tg := newTarget()
	b.Run("full", func(b *testing.B) {
		var cpu time.Duration
		for range b.N {
			c0 := cpuTime()
			if _, err := st.resync(ctx, tg); err != nil || tg.peers != n {
				b.Fatalf("%d peers, %v", tg.peers, err)
			}
			cpu += cpuTime() - c0
		}
		b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/resync")
	})
	b.Run("incremental", func(b *testing.B) {
		cursor, err := st.resync(ctx, tg)
		if err != nil {
			b.Fatal(err)
		}
		var cpu time.Duration
		b.ResetTimer()
		for i := range b.N {
			b.StopTimer()
			fps := make([]string, changed)
			for j := range fps {
				fps[j] = vpntest.FP((i*changed + j) % n)
			}
			if _, err := st.db.Pool().Exec(ctx, "UPDATE vpn_peers SET node = 'x' WHERE site = 'hq' AND fingerprint = ANY($1)", fps); err != nil {
				b.Fatal(err)
			}
			tg.reset()
			b.StartTimer()
			c0 := cpuTime()
			if cursor, err = st.resyncSince(ctx, tg, cursor); err != nil {
				b.Fatal(err)
			}
			cpu += cpuTime() - c0
			if len(tg.applied) < changed {
				b.Fatalf("%d changes applied, want %d", len(tg.applied), changed)
			}
		}
		b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/resync")
	})
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
