package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/vpn/pgstore"
	"github.com/gatehouse/gatehouse/vpn/vpntest"
)

func postgresVPNConfig(t *testing.T, dsn string) *loaded {
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := writeConfig(t, func(s string) string {
		s = replace("[vpn]\n# The VPN needs CAP_NET_ADMIN for its TUN interface; enable it as root.\nenabled = false",
			"[vpn]\nenabled = true")(s)
		return withStore(`backend = "postgres"` + "\n" + `dsn_file = "` + dsnFile + `"` + "\nsite = \"hq\"")(s)
	})
	l, err := loadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// With backend = "postgres" the VPN registry is the shared one; while the
// database does not answer /readyz has a degraded "store" line (the node
// stays in service: it still serves Wi-Fi and connected peers).
func TestStoreVPNWiringOutage(t *testing.T) {
	l := postgresVPNConfig(t, "postgres://gatehouse@127.0.0.1:1/none?connect_timeout=1")
	s, err := buildServers(l, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.db.Close()
	if s.vpnStore == nil || s.db == nil {
		t.Fatal("postgres backend: the VPN registry is not on the shared store")
	}
	s.migrateAtStart(context.Background(), slog.New(slog.DiscardHandler)) // logs, does not fail
	r := readiness(s)
	err = r["store"]
	if err == nil || !isDegraded(err) || !strings.Contains(err.Error(), "unavailable — Wi-Fi logins and connected VPN peers keep working") {
		t.Fatalf("readiness store = %v", err)
	}
}

// At start the schema is migrated; the readiness line is absent for the
// file backend.
func TestStoreVPNWiringMigrates(t *testing.T) {
	pg := pgtest.Start(t)
	l := postgresVPNConfig(t, pg.CreateDatabase("gh_wiring"))
	s, err := buildServers(l, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.db.Close()
	s.migrateAtStart(context.Background(), slog.New(slog.DiscardHandler))
	st, err := s.db.Status(context.Background())
	if err != nil || len(st.Pending) != 0 || st.Version() == 0 {
		t.Fatalf("after start: %+v, %v", st, err)
	}

	// gatehouse peers and peers remove (no server running) work on the
	// shared registry.
	pst := pgstore.New(s.db, pgstore.Config{Site: "hq"}, nil)
	if err := pst.Save(vpntest.Record(t, 7, "100.96.0.7")); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"peers", "-config", l.file}, &out, &errb); code != 0 || !strings.Contains(out.String(), "user7") || !strings.Contains(out.String(), "1 peers") {
		t.Fatalf("peers: %d %s %s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"peers", "remove", "-config", l.file, "user7"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "removed user7") {
		t.Fatalf("peers remove: %d %s %s", code, out.String(), errb.String())
	}
	if recs, _, err := pst.Load(); err != nil || len(recs) != 0 {
		t.Fatalf("after peers remove: %d records, %v", len(recs), err)
	}

	lf, err := loadConfig(writeConfig(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	sf, err := buildServers(lf, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := readiness(sf)["store"]; ok || sf.db != nil {
		t.Fatal("file backend: a store line or a database pool")
	}
}
