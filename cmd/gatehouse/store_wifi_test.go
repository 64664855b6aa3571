package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/policytest"
	"github.com/gatehouse/gatehouse/radius"
	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/store/postgres"
	"github.com/gatehouse/gatehouse/store/spool"
)

// TestServeWiFiStore: gatehouse serve with [store] backend = "postgres"
// and audit = true: a real supplicant's login writes its session to
// wifi_sessions and its audit event to audit_events, and an
// Accounting-Request lands in radius_accounting (accounting defaults to
// "store"), all through the node's spool.
func TestServeWiFiStore(t *testing.T) {
	bin := policytest.RequireTool(t, "eapol_test")
	pg := pgtest.Start(t)
	dsn := pg.CreateDatabase("gh_serve")
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, acct := freeUDPPort(t), freeUDPPort(t)
	f := writeConfig(t, func(s string) string {
		s = replace(`listen = "127.0.0.1:1812"`, fmt.Sprintf(`listen = "127.0.0.1:%d"`, auth))(s)
		s = replace(`accounting_listen = "127.0.0.1:1813"`, fmt.Sprintf(`accounting_listen = "127.0.0.1:%d"`, acct))(s)
		return withStore(fmt.Sprintf("backend = \"postgres\"\ndsn_file = %q\nnode = \"node-a\"\naudit = true", dsnFile))(s)
	})
	srv := startServe(t, f, nil)
	if out, err := eapolTest(t, bin, auth, "alice", true); err != nil {
		t.Fatalf("login: %v\n%s", err, tail(out))
	}

	secret, _ := os.ReadFile("../../testdata/secrets/radius-localhost")
	p := layeh.New(layeh.CodeAccountingRequest, []byte(strings.TrimSpace(string(secret))))
	rfc2866.AcctStatusType_Set(p, rfc2866.AcctStatusType_Value_Start)
	rfc2866.AcctSessionID_SetString(p, "serve-1")
	rfc2865.UserName_SetString(p, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := layeh.Exchange(ctx, p, net.JoinHostPort("127.0.0.1", fmt.Sprint(acct))); err != nil {
		t.Fatalf("accounting: %v", err)
	}

	db, err := postgres.Open(postgres.Config{DSN: dsn}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waitFor(t, "the accounting record in PostgreSQL", func() bool {
		rows, err := db.WiFi().Accounting(ctx, "serve-1")
		return err == nil && len(rows) == 1 && rows[0].Node == "node-a"
	})
	waitFor(t, "the session in wifi_sessions", func() bool {
		var n int
		err := db.Pool().QueryRow(ctx, "SELECT count(*) FROM wifi_sessions WHERE node = 'node-a' AND NOT ended").Scan(&n)
		return err == nil && n == 1
	})
	waitFor(t, "the login's audit event in audit_events", func() bool {
		var n int
		err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE node = 'node-a' AND door = 'wifi'
			AND event = 'authenticate' AND outcome = 'allow' AND identity IS NOT NULL AND event_json->>'tls_version' = '1.3'`).Scan(&n)
		return err == nil && n == 1
	})
	l, err := loadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.cfg.Server.StateDir, "accounting.jsonl")); err == nil {
		t.Error("accounting = store (the postgres default) also wrote accounting.jsonl")
	}
	db.Close()
	srv.stopClean(t)
}

type failingTarget struct{}

func (failingTarget) Apply(context.Context, string, []spool.Entry) error {
	return errors.New("connection refused")
}

// While PostgreSQL does not take the spooled records, /readyz says
// "degraded" (the node stays ready: logins and accounting go on).
func TestSpoolReadiness(t *testing.T) {
	sp, err := spool.Open(spool.Config{Dir: t.TempDir(), Node: "n", RetryMax: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	w := &wifiShared{spool: sp}
	if err := w.Ready(); err != nil {
		t.Fatalf("empty spool: %v", err)
	}
	sp.Append("acct", []byte(`{}`))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sp.Run(ctx, failingTarget{}); close(done) }()
	waitFor(t, "the replayer to fail", func() bool { return sp.Stats().Failing })
	cancel()
	<-done
	err = w.Ready()
	if !isDegraded(err) || !strings.Contains(err.Error(), "1 Wi-Fi/accounting records spooled locally") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Ready = %v; want degraded with the depth and the error", err)
	}
}

// The spool's depth and age are exported, and the metrics lint clean.
func TestWiFiStoreMetrics(t *testing.T) {
	sp, err := spool.Open(spool.Config{Dir: t.TempDir(), Node: "n"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	sp.Append("acct", []byte(`{}`), []byte(`{}`))
	rs, err := radius.New(radius.Config{Clients: []radius.ClientConfig{{Name: "lo", Network: "127.0.0.1", Secret: "s"}}},
		allowNone{}, &tls.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newWiFiStoreCollector(&wifiShared{spool: sp}, rs))
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}
	if v := testutil.ToFloat64(onlyMetric(t, reg, "gatehouse_store_spool_records")); v != 2 {
		t.Errorf("gatehouse_store_spool_records = %v, want 2", v)
	}
	if v := testutil.ToFloat64(onlyMetric(t, reg, "gatehouse_store_spool_oldest_seconds")); v < 0 || v > 60 {
		t.Errorf("gatehouse_store_spool_oldest_seconds = %v", v)
	}
}

type allowNone struct{}

func (allowNone) Authorize(context.Context, []*x509.Certificate) policy.Decision {
	return policy.Decision{}
}

// onlyMetric is a collector of the one metric name of reg.
func onlyMetric(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return gaugeOf(mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

func gaugeOf(v float64) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
	g.Set(v)
	return g
}

// A Wi-Fi-only node started against a new database that is down: the
// spool keeps the records, the schema is migrated once the server comes
// up (retried with backoff, not only at start), and the records reach
// PostgreSQL without a restart.
func TestWiFiStoreMigratesWhenDatabaseComesUp(t *testing.T) {
	pg := pgtest.Start(t)
	dsn := pg.CreateDatabase("gh_wifi_late")
	pg.Stop()
	db, err := postgres.Open(postgres.Config{DSN: dsn, ConnectTimeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sp, err := spool.Open(spool.Config{Dir: t.TempDir(), Node: "wifi-only", RetryMax: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &wifiShared{db: db, spool: sp, store: db.WiFi(), log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := sp.Append("acct", []byte(`{"time":"2026-12-01T12:00:00Z","status":"Start","session_id":"late-1","nas":"ap","nas_addr":"192.0.2.1"}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replayer to fail", func() bool { return sp.Stats().Failing })
	time.Sleep(time.Second)
	pg.Restart()
	waitFor(t, "the spooled record in PostgreSQL", func() bool {
		rows, err := db.WiFi().Accounting(context.Background(), "late-1")
		return err == nil && len(rows) == 1
	})
}
