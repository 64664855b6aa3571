package postgres

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/store/spool"
	"github.com/gatehouse/gatehouse/store/wifi"
	"github.com/gatehouse/gatehouse/store/wifi/wifitest"
)

// The PostgreSQL store passes the same contract as the file store.
func TestWiFiContract(t *testing.T) {
	pg := pgtest.Start(t)
	var n atomic.Int32
	wifitest.Run(t, func(t *testing.T) wifi.Store {
		db := open(t, pg.CreateDatabase(fmt.Sprintf("gh_wifi_%d", n.Add(1))))
		if _, err := db.Migrate(ctx(t)); err != nil {
			t.Fatal(err)
		}
		return db.WiFi()
	})
}

// Audit events from the spool land in audit_events once each.
func TestAuditEvents(t *testing.T) {
	pg := pgtest.Start(t)
	db := open(t, pg.CreateDatabase("gh_audit"))
	if _, err := db.Migrate(ctx(t)); err != nil {
		t.Fatal(err)
	}
	ev := []byte(`{"time":"2026-12-01T12:00:00Z","door":"wifi","event":"authenticate","nas":"ap","outcome":"allow","code":"allowed","rule":"engineering","name":"alice","duration_ms":1.5}`)
	es := []spool.Entry{{Seq: 1, Kind: wifi.KindAudit, Data: ev}, {Seq: 2, Kind: wifi.KindAudit, Data: ev}}
	for range 2 { // a replay
		if err := db.WiFi().Apply(ctx(t), "a", es); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	var rule, identity, outcome string
	if err := db.pool.QueryRow(ctx(t), "SELECT count(*), min(rule), min(identity), min(outcome) FROM audit_events WHERE door = 'wifi' AND event_json->>'nas' = 'ap'").Scan(&n, &rule, &identity, &outcome); err != nil {
		t.Fatal(err)
	}
	if n != 2 || rule != "engineering" || identity != "alice" || outcome != "allow" {
		t.Fatalf("audit_events: %d rows, rule %q identity %q outcome %q", n, rule, identity, outcome)
	}
}
