package pgstore

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/store/postgres"
	"github.com/gatehouse/gatehouse/vpn"
	"github.com/gatehouse/gatehouse/vpn/vpntest"
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
