package postgres

import (
	"strings"
	"testing"
	"testing/fstest"
)

// The shipped migrations load: each declares its compatibility, and the
// sums of those applied before the declaration existed are unchanged (a
// database they migrated still matches).
func TestMigrationsDeclared(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.CompatibleFrom < 1 || m.CompatibleFrom > m.Version {
			t.Errorf("%04d_%s: compatible-from %d", m.Version, m.Name, m.CompatibleFrom)
		}
	}
	// The verdicts for 2 and 3 (reasons in docs/operations.md and the
	// report of the change that made them): both additive, their older
	// binaries' writes stay valid and mean the same.
	for v, want := range map[int]int{1: 1, 2: 1, 3: 1} {
		if got := ms[v-1].CompatibleFrom; got != want {
			t.Errorf("migration %d: compatible-from %d, want %d", v, got, want)
		}
	}
	for v, sum := range map[int]string{
		1: "6af61cfe3bbcd8a8a61cda8755bb5c14430904ea48888867d6220d6f606150a2",
		2: "be3e5ae788a86ab22a41d6b5a655c01b8f727a0f6055efff3fc1065eba541f8a",
		3: "d82227150eaf86107a8f4d9f5b87d465d07ecc1fd36a37650f0e51662ed27605",
	} {
		if ms[v-1].Sum != sum {
			t.Errorf("migration %d: sha256 %s, want %s as stored by the binaries that applied it", v, ms[v-1].Sum, sum)
		}
	}
}

// A migration without its declaration, or with a malformed one, does not
// load; the error names the file.
func TestMigrationDeclarationErrors(t *testing.T) {
	one := "-- schema 1\n-- compatible-from: 1\nCREATE TABLE a (x int);\n"
	for _, tc := range []struct{ name, text, want string }{
		{"none", "-- schema 2\nCREATE TABLE b (x int);\n", "no \"-- compatible-from: K\" line"},
		{"not a number", "-- schema 2\n-- compatible-from: one\nSELECT 1;\n", "want \"-- compatible-from: K\""},
		{"no space", "-- schema 2\n-- compatible-from:1\nSELECT 1;\n", "want \"-- compatible-from: K\""},
		{"no space after --", "-- schema 2\n--compatible-from: 1\nSELECT 1;\n", "want \"-- compatible-from: K\""},
		{"trailing text", "-- schema 2\n-- compatible-from: 1 because\nSELECT 1;\n", "want \"-- compatible-from: K\""},
		{"zero", "-- schema 2\n-- compatible-from: 0\nSELECT 1;\n", "want \"-- compatible-from: K\""},
		{"negative", "-- schema 2\n-- compatible-from: -1\nSELECT 1;\n", "want \"-- compatible-from: K\""},
		{"newer than itself", "-- schema 2\n-- compatible-from: 3\nSELECT 1;\n", "newer than the migration's own version 2"},
		{"twice", "-- schema 2\n-- compatible-from: 1\n-- compatible-from: 2\nSELECT 1;\n", "a second compatible-from line"},
		{"after the SQL", "-- schema 2\nSELECT 1;\n-- compatible-from: 1\n", "must be in the leading comment lines"},
	} {
		_, err := loadMigrations(fstest.MapFS{
			"0001_a.sql": {Data: []byte(one)},
			"0002_b.sql": {Data: []byte(tc.text)},
		})
		if err == nil || !strings.Contains(err.Error(), "0002_b.sql") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one naming 0002_b.sql and %q", tc.name, err, tc.want)
		}
	}
	ms, err := loadMigrations(fstest.MapFS{"0001_a.sql": {Data: []byte(one)}, "0002_b.sql": {Data: []byte("-- b\n\n-- compatible-from: 2\nSELECT 1;\n")}})
	if err != nil || len(ms) != 2 || ms[1].CompatibleFrom != 2 {
		t.Fatalf("valid set: %+v, %v", ms, err)
	}
}

// The parser never panics, and what it accepts is in range and hashed
// without the declaration.
func FuzzParseMigration(f *testing.F) {
	f.Add("0002_b.sql", "-- b\n-- compatible-from: 1\nSELECT 1;\n")
	f.Add("0003_c.sql", "-- compatible-from: 3")
	f.Add("0001_a.sql", "SELECT 1;\n-- compatible-from: 1\n")
	f.Fuzz(func(t *testing.T, file, text string) {
		m, err := parseMigration(file, []byte(text))
		if err != nil {
			return
		}
		if m.CompatibleFrom < 1 || m.CompatibleFrom > m.Version || m.SQL != text {
			t.Fatalf("%q: %+v", text, m)
		}
	})
}
