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

// Accounting records with one record_id are stored once, whichever node
// spooled them and whether they come in one batch or two; records without
// one are all kept; a replay stays idempotent.
func TestAccountingRecordID(t *testing.T) {
	pg := pgtest.Start(t)
	db := open(t, pg.CreateDatabase("gh_acct_rid"))
	if _, err := db.Migrate(ctx(t)); err != nil {
		t.Fatal(err)
	}
	rec := func(status, rid string) []byte {
		return fmt.Appendf(nil, `{"time":"2026-12-01T12:00:00Z","status":%q,"session_id":"s1","nas":"lo","nas_addr":"127.0.0.1","record_id":%q}`, status, rid)
	}
	a := []spool.Entry{
		{Seq: 1, Kind: wifi.KindAcct, Data: rec("start", "00000000000000000000000000000001")},
		{Seq: 2, Kind: wifi.KindAcct, Data: rec("stop", "00000000000000000000000000000002")},
		{Seq: 3, Kind: wifi.KindAcct, Data: rec("stop", "00000000000000000000000000000002")}, // a copy in the same batch
		{Seq: 4, Kind: wifi.KindAcct, Data: rec("accounting-on", "")},
		{Seq: 5, Kind: wifi.KindAcct, Data: rec("accounting-on", "")},
	}
	b := []spool.Entry{
		{Seq: 1, Kind: wifi.KindAcct, Data: rec("stop", "00000000000000000000000000000002")}, // the copy node b received
		{Seq: 2, Kind: wifi.KindAcct, Data: rec("interim", "00000000000000000000000000000003")},
	}
	for range 2 { // the second round is a replay of both spools
		if err := db.WiFi().Apply(ctx(t), "a", a); err != nil {
			t.Fatal(err)
		}
		if err := db.WiFi().Apply(ctx(t), "b", b); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := db.WiFi().Accounting(ctx(t), "s1")
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, r := range rows {
		count[r.Acct.Status]++
	}
	if len(rows) != 5 || count["start"] != 1 || count["stop"] != 1 || count["accounting-on"] != 2 || count["interim"] != 1 {
		t.Fatalf("%d rows %v; want start, stop, interim once and both accounting-on", len(rows), count)
	}
}
