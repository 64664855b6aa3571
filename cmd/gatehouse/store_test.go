package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/store/postgres"
)

// withStore appends a [store] section to the config.
func withStore(section string) func(string) string {
	return func(s string) string { return s + "\n[store]\n" + section + "\n" }
}

func TestStoreConfigErrors(t *testing.T) {
	for _, tc := range []struct{ section, want string }{
		{`backend = "mysql"`, `store.backend: "mysql": must be file or postgres`},
		{`backend = "postgres"`, `store.dsn_file: required for backend = "postgres"`},
		{`dsn_file = "x"`, `store.dsn_file: only for backend = "postgres"`},
		{"max_conns = -1", "store.max_conns: -1: must not be negative"},
		{"backend = \"postgres\"\ndsn_file = \"x\"\nended_session_retention = \"-1h\"", "store.ended_session_retention: -1h0m0s: must not be negative"},
		{`ended_session_retention = "1h"`, `store.ended_session_retention: only for backend = "postgres"`},
		{"backend = \"postgres\"\ndsn_file = \"x\"\naccounting_retention = \"-24h\"", "store.accounting_retention: -24h0m0s: must not be negative (0s keeps accounting records forever)"},
		{"backend = \"postgres\"\ndsn_file = \"x\"\naudit_retention = \"-1s\"", "store.audit_retention: -1s: must not be negative (0s keeps audit events forever)"},
		{`accounting_retention = "1h"`, `store.accounting_retention: only for backend = "postgres"`},
		{`audit_retention = "0s"`, `store.audit_retention: only for backend = "postgres"`},
		{"bakend = 1", "store.bakend: unknown key"},
	} {
		file := writeConfig(t, withStore(tc.section))
		_, err := loadConfig(file)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: err = %v, want %q and the file", tc.section, err, tc.want)
		}
	}
}

// The retentions the database's maintenance gets: defaults, "0s" (kept
// forever) and set values.
func TestStoreRetentions(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		section string
		want    postgres.MaintainConfig
	}{
		{"", postgres.MaintainConfig{EndedSessionRetention: 30 * day, AccountingRetention: 90 * day, AuditRetention: 365 * day}},
		{"ended_session_retention = \"0s\"\naccounting_retention = \"0s\"\naudit_retention = \"0s\"", postgres.MaintainConfig{}},
		{"accounting_retention = \"4380h\"\naudit_retention = \"0s\"", postgres.MaintainConfig{EndedSessionRetention: 30 * day, AccountingRetention: 182*day + 12*time.Hour}},
	} {
		l, err := loadConfig(writeConfig(t, withStore("backend = \"postgres\"\ndsn_file = \"x\"\n"+tc.section)))
		if err != nil {
			t.Fatalf("%q: %v", tc.section, err)
		}
		if got := l.cfg.Store.maintainConfig(); got != tc.want {
			t.Errorf("%q: maintenance %+v, want %+v", tc.section, got, tc.want)
		}
	}
}

// gatehouse store status / migrate against a real PostgreSQL; the DSN's
// password never appears in the output.
func TestStoreCommand(t *testing.T) {
	pg := pgtest.Start(t)
	dsn := pg.CreateDatabase("gh_cmd")
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, withStore(`backend = "postgres"`+"\n"+`dsn_file = "`+dsnFile+`"`))
	storeCmd := func(sub string) string {
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"store", sub, "-config", cfg}, &out, &errb); code != 0 {
			t.Fatalf("store %s: exit %d: %s", sub, code, errb.String())
		}
		return out.String()
	}
	if got := storeCmd("status"); !strings.Contains(got, "schema version 0 of") || !strings.Contains(got, "pending") {
		t.Fatalf("status before migrate: %q", got)
	}
	if got := storeCmd("migrate"); !strings.Contains(got, "applied 0001_init") {
		t.Fatalf("migrate: %q", got)
	}
	if got := storeCmd("migrate"); strings.Contains(got, "applied") || strings.Contains(got, "pending") {
		t.Fatalf("second migrate: %q", got)
	}
	// A wrong DSN's error names the file, never the password in it.
	os.WriteFile(dsnFile, []byte("postgres://u:pw-do-not-print@[::1\n"), 0o600)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"store", "status", "-config", cfg}, &out, &errb); code == 0 || strings.Contains(errb.String(), "pw-do-not-print") || !strings.Contains(errb.String(), "store.dsn_file") {
		t.Fatalf("bad dsn: exit %d, %q", code, errb.String())
	}
}

// gatehouse store status on a database another node's newer binary
// migrated: a newer version declared compatible with this binary is
// reported as ahead (this node runs; upgrade it), one that is not is
// refused with its version named.
func TestStoreCommandSchemaAhead(t *testing.T) {
	pg := pgtest.Start(t)
	dsn := pg.CreateDatabase("gh_cmd_ahead")
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, withStore(`backend = "postgres"`+"\n"+`dsn_file = "`+dsnFile+`"`))
	storeCmd := func(sub string) (string, string, int) {
		var out, errb bytes.Buffer
		code := run(context.Background(), []string{"store", sub, "-config", cfg}, &out, &errb)
		return out.String(), errb.String(), code
	}
	if _, e, code := storeCmd("migrate"); code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, e)
	}
	db, err := postgres.Open(postgres.Config{DSN: dsn}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	known, _ := postgres.Migrations()
	k := len(known)
	// Seen from this binary before it migrates a node: the newest shipped
	// migration pending, declared compatible with the one before.
	if _, err := db.Pool().Exec(ctx, "DELETE FROM gatehouse_schema_migrations WHERE version = $1", k); err != nil {
		t.Fatal(err)
	}
	out, e, code := storeCmd("status")
	if want := fmt.Sprintf("schema version %d of %d known, 1 pending", k-1, k); code != 0 || !strings.Contains(out, want) ||
		!strings.Contains(out, fmt.Sprintf("compatible with schema %d: nodes not yet upgraded keep running", k-1)) {
		t.Fatalf("status, one pending: exit %d, %q, %q; want %q and compatible", code, out, e, want)
	}
	if _, err := db.Pool().Exec(ctx, "INSERT INTO gatehouse_schema_migrations (version, name, sha256, compatible_from) VALUES ($1, $2, $3, $4)",
		k, known[k-1].Name, known[k-1].Sum, known[k-1].CompatibleFrom); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool().Exec(ctx, "INSERT INTO gatehouse_schema_migrations (version, name, sha256, compatible_from) VALUES ($1, 'future', 'x', $2)", k+1, k); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("schema version %d of %d known: ahead of this binary, compatible", k+1, k)
	for _, sub := range []string{"status", "migrate"} {
		out, e, code := storeCmd(sub)
		if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "upgrade this node") || strings.Contains(out, "applied") {
			t.Fatalf("%s, ahead and compatible: exit %d, %q, %q; want %q", sub, code, out, e, want)
		}
	}
	if _, err := db.Pool().Exec(ctx, "UPDATE gatehouse_schema_migrations SET compatible_from = $1 WHERE version = $1", k+1); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"status", "migrate"} {
		out, e, code := storeCmd(sub)
		if code == 0 || !strings.Contains(e, fmt.Sprintf("schema version %d is newer than this binary knows (%d)", k+1, k)) ||
			!strings.Contains(e, fmt.Sprintf("%d (future) compatible from %d", k+1, k+1)) {
			t.Fatalf("%s, ahead and not compatible: exit %d, %q, %q", sub, code, out, e)
		}
	}
}

func TestWiFiStoreConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		edit func(string) string
		want string
	}{
		{replace(`[radius]`, "[radius]\naccounting = \"store\""), `radius.accounting: "store" needs [store] backend = "postgres"`},
		{replace(`[radius]`, "[radius]\naccounting = \"db\""), `radius.accounting: "db": must be file, store or both`},
		{withStore("audit = true"), `store.audit: only for backend = "postgres"`},
	} {
		_, err := loadConfig(writeConfig(t, tc.edit))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
	}
}

// What store status says of pending migrations for the nodes not yet
// upgraded.
func TestPendingCompat(t *testing.T) {
	m := func(v, cf int) postgres.Migration {
		return postgres.Migration{Version: v, Name: fmt.Sprint("m", v), CompatibleFrom: cf}
	}
	for _, tc := range []struct {
		pending []postgres.Migration
		want    string
	}{
		{[]postgres.Migration{m(4, 3)}, "compatible with schema 3: nodes not yet upgraded keep running"},
		{[]postgres.Migration{m(4, 1), m(5, 2)}, "compatible with schema 3: nodes not yet upgraded keep running"},
		{[]postgres.Migration{m(4, 3), m(5, 5)}, "not compatible with schema 3: nodes not yet upgraded refuse the database once 0005_m5 is applied (compatible from 5)"},
		{[]postgres.Migration{m(4, 4)}, "not compatible with schema 3"},
	} {
		if got := pendingCompat(tc.pending, 3); !strings.Contains(got, tc.want) {
			t.Errorf("%+v: %q, want %q", tc.pending, got, tc.want)
		}
	}
}
