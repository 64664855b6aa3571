// Package wifitest is the contract suite every wifi.Store implementation
// passes: the file store and the PostgreSQL store run the same tests.
package wifitest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/spool"
	"github.com/gatehouse/gatehouse/store/wifi"
)

// Run runs the contract against stores made by open (each subtest gets a
// fresh, empty store).
func Run(t *testing.T, open func(t *testing.T) wifi.Store) {
	t.Run("AccountingIdempotent", func(t *testing.T) { accountingIdempotent(t, open(t)) })
	t.Run("NodesHaveTheirOwnKeys", func(t *testing.T) { nodesKeys(t, open(t)) })
	t.Run("SessionLifecycle", func(t *testing.T) { sessionLifecycle(t, open(t)) })
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// AcctEntry is a spooled accounting record of NAS session sid.
func AcctEntry(seq uint64, status, sid string) spool.Entry {
	st, in := uint32(seq), uint64(seq)*1000
	a := wifi.Acct{Time: t0.Add(time.Duration(seq) * time.Second), Status: status, SessionID: sid, UserName: "alice",
		NAS: "ap", NASAddr: "127.0.0.1", CallingStation: "02-00-00-00-00-01", FramedIP: "10.0.0.7",
		SessionTime: &st, InputOctets: &in, ClassToken: "0123456789abcdef0123456789abcdef"}
	b, _ := json.Marshal(a)
	return spool.Entry{Seq: seq, Kind: wifi.KindAcct, Time: a.Time, Data: b}
}

func sessionEntry(seq uint64, tok, sid string, updated time.Time) spool.Entry {
	b, _ := json.Marshal(map[string]any{"token": tok, "nas": "ap", "nas_addr": "127.0.0.1", "session_id": sid,
		"station": "02-00-00-00-00-01", "accepted": t0, "updated": updated, "chain": []string{"AAEC"}})
	return spool.Entry{Seq: seq, Kind: wifi.KindSession, Time: updated, Data: b}
}

func endEntry(seq uint64, tok string, updated time.Time) spool.Entry {
	b, _ := json.Marshal(wifi.SessionEnd{Token: tok, Updated: updated})
	return spool.Entry{Seq: seq, Kind: wifi.KindSessionEnd, Time: updated, Data: b}
}

func apply(t *testing.T, s wifi.Store, node string, es ...spool.Entry) {
	t.Helper()
	if err := s.Apply(ctx(t), node, es); err != nil {
		t.Fatal(err)
	}
}

func accountingIdempotent(t *testing.T, s wifi.Store) {
	var first, second []spool.Entry
	for i := uint64(1); i <= 5; i++ {
		first = append(first, AcctEntry(i, "interim", "s1"))
	}
	for i := uint64(3); i <= 7; i++ { // a replay overlapping the first batch
		second = append(second, AcctEntry(i, "interim", "s1"))
	}
	apply(t, s, "a", first...)
	apply(t, s, "a", first...)
	apply(t, s, "a", second...)
	apply(t, s, "a", AcctEntry(8, "stop", "s2"))
	rows, err := s.Accounting(ctx(t), "s1")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 7 {
		t.Fatalf("%d rows for s1, want 7 (once each)", len(rows))
	}
	seen := map[string]bool{}
	for i, r := range rows {
		if want := spool.Key("a", uint64(i+1)); r.Key != want || seen[r.Key] {
			t.Fatalf("row %d key %q, want %q once", i, r.Key, want)
		}
		seen[r.Key] = true
		if r.Node != "a" || r.Acct.Status != "interim" || r.Acct.UserName != "alice" || r.Acct.SessionTime == nil || *r.Acct.SessionTime != uint32(i+1) {
			t.Fatalf("row %d = %+v", i, r)
		}
	}
	all, err := s.Accounting(ctx(t), "")
	if err != nil || len(all) != 8 {
		t.Fatalf("all rows = %d, %v; want 8", len(all), err)
	}
}

func nodesKeys(t *testing.T, s wifi.Store) {
	apply(t, s, "a", AcctEntry(1, "start", "x"))
	apply(t, s, "b", AcctEntry(1, "start", "x"))
	rows, err := s.Accounting(ctx(t), "x")
	if err != nil || len(rows) != 2 || rows[0].Key == rows[1].Key {
		t.Fatalf("rows = %+v, %v; want one per node", rows, err)
	}
}

func sessionLifecycle(t *testing.T, s wifi.Store) {
	const tok = "00112233445566778899aabbccddeeff"
	lookup := func(want string) {
		t.Helper()
		rec, ok, err := s.LookupSession(ctx(t), tok)
		if err != nil {
			t.Fatal(err)
		}
		if want == "" {
			if ok {
				t.Fatalf("found ended session: %s", rec)
			}
			return
		}
		var r struct {
			SessionID string   `json:"session_id"`
			Chain     []string `json:"chain"`
		}
		if !ok || json.Unmarshal(rec, &r) != nil || r.SessionID != want || len(r.Chain) != 1 {
			t.Fatalf("lookup = %s, %v; want session %q with its chain", rec, ok, want)
		}
	}
	if _, ok, err := s.LookupSession(ctx(t), "ffffffffffffffffffffffffffffffff"); ok || err != nil {
		t.Fatalf("unknown token: %v, %v", ok, err)
	}
	apply(t, s, "a", sessionEntry(1, tok, "", t0))
	if _, ok, err := s.LookupSession(ctx(t), tok); !ok || err != nil {
		t.Fatalf("accepted session not found: %v, %v", ok, err)
	}
	apply(t, s, "b", sessionEntry(1, tok, "acct-1", t0.Add(time.Minute)))
	lookup("acct-1")
	apply(t, s, "a", sessionEntry(2, tok, "stale", t0.Add(30*time.Second))) // older update from a late node
	lookup("acct-1")
	apply(t, s, "b", endEntry(2, tok, t0.Add(2*time.Minute)))
	lookup("")
	apply(t, s, "a", sessionEntry(3, tok, "late", t0.Add(90*time.Second))) // late replay after the end
	lookup("")
}
