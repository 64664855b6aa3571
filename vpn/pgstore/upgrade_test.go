package pgstore

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy/policytest"
	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/vpn/vpntest"
)

// A rolling upgrade, seen from a node not yet upgraded: another node's
// newer binary applied a schema version this one does not know (4,
// additive, declared compatible from 3). This node still connects and
// follows the registry: an enrollment and a removal made by the other
// node are applied here, a reconnect included.
func TestRunFollowsCompatibleNewerSchema(t *testing.T) {
	pg := pgtest.Start(t)
	open := newDB(t, pg)
	newer := New(open(), Config{Site: "hq", Node: "upgraded"}, nil)
	// What the newer binary's migration 4 did: an additive change, and its
	// row declaring the oldest schema whose binaries still run on it.
	for _, q := range []string{
		"ALTER TABLE vpn_peers ADD COLUMN note text",
		"ALTER TABLE gatehouse_schema_migrations ADD COLUMN IF NOT EXISTS compatible_from integer",
		"INSERT INTO gatehouse_schema_migrations (version, name, sha256, compatible_from) VALUES (4, 'peer_note', 'x', 3)",
	} {
		if _, err := newer.db.Pool().Exec(tctx(t), q); err != nil {
			t.Fatal(err)
		}
	}
	old := New(open(), Config{Site: "hq", Node: "old", ResyncEvery: time.Hour}, nil)
	tg := newTarget()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- old.Run(ctx, tg) }()
	defer func() { cancel(); <-done }()
	syncs := func() int { tg.mu.Lock(); defer tg.mu.Unlock(); return tg.syncs }
	waitFor(t, "the old node connected", func() bool { return old.Available() == nil && syncs() == 1 })
	if err := newer.Save(vpntest.Record(t, 1, "100.96.0.2")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the enrollment applied on the old node", func() bool { n, _ := tg.get(vpntest.FP(1)); return n > 0 })
	// A reconnect (every session cut) finds the schema acceptable again:
	// one more full resync.
	if _, err := newer.db.Pool().Exec(tctx(t), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the old node reconnected", func() bool { return old.Available() == nil && syncs() == 2 })
	if err := New(open(), Config{Site: "hq", Node: "upgraded"}, nil).Remove(vpntest.FP(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removal applied on the old node", func() bool { _, n := tg.get(vpntest.FP(1)); return n > 0 })
}

// The other side of it: a schema version this node's binary does not know
// and that is not declared compatible with it. The node refuses it and
// says so plainly (not "database unavailable"): it no longer applies
// other nodes' changes until it is upgraded.
func TestRunIncompatibleNewerSchemaSaysSo(t *testing.T) {
	pg := pgtest.Start(t)
	open := newDB(t, pg)
	newer := New(open(), Config{Site: "hq", Node: "upgraded"}, nil)
	for _, q := range []string{
		"ALTER TABLE gatehouse_schema_migrations ADD COLUMN IF NOT EXISTS compatible_from integer",
		"INSERT INTO gatehouse_schema_migrations (version, name, sha256, compatible_from) VALUES (4, 'peer_rename', 'x', 4)",
	} {
		if _, err := newer.db.Pool().Exec(tctx(t), q); err != nil {
			t.Fatal(err)
		}
	}
	var logs policytest.SyncBuffer
	old := New(open(), Config{Site: "hq", Node: "old"}, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- old.Run(ctx, newTarget()) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the refusal logged", func() bool { return strings.Contains(logs.String(), "schema is incompatible with this binary") })
	if strings.Contains(logs.String(), "database unavailable") {
		t.Errorf("an incompatible schema logged as an outage:\n%s", logs.String())
	}
	if old.Available() == nil {
		t.Error("the node says the registry is available on a schema it refused")
	}
}
