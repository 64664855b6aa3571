package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func checkDir(t *testing.T, cfg string, extra ...string) (*checkReport, string) {
	t.Helper()
	var out, errb bytes.Buffer
	args := append([]string{"check", "--directory", "--json", "--config", cfg}, extra...)
	if code := run(context.Background(), args, &out, &errb); code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	var rep checkReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	run(context.Background(), []string{"check", "--directory", "--config", cfg}, &text, &errb)
	return &rep, text.String()
}

// TestCheckDirectoryGroups: check --directory resolves every group a rule
// names and warns about one that matches no group (a typo grants nothing),
// and tries the group mode on a member of a group found.
func TestCheckDirectoryGroups(t *testing.T) {
	rep, text := checkDir(t, writeConfig(t, replace(`groups = ["sales"]`, `groups = ["saels"]`)))
	d := rep.Directory
	if !d.Reachable || len(d.Groups) != 3 {
		t.Fatalf("%+v", d)
	}
	want := `policy[2].groups[0]: "saels" (rule sales): no such group in the directory`
	if len(d.Warnings) != 1 || !strings.Contains(d.Warnings[0], want) || !strings.Contains(text, "warning: "+want) {
		t.Fatalf("warnings %q, text:\n%s", d.Warnings, text)
	}
	for _, g := range d.Groups {
		if g.Found != (g.Group != "saels") {
			t.Errorf("%+v", g)
		}
	}
	if d.Sample == nil || len(d.Sample.Groups) == 0 {
		t.Fatalf("sample %+v", d.Sample)
	}
	// The correct file: no warning; --sample looks up that identity.
	rep, _ = checkDir(t, writeConfig(t, nil), "--sample", "bob@example.com")
	if d := rep.Directory; len(d.Warnings) != 0 || d.Sample == nil || d.Sample.DN != "uid=bob,ou=people,dc=example,dc=com" || len(d.Sample.Groups) == 0 {
		t.Fatalf("%+v %+v", d, d.Sample)
	}
}

// TestCheckDirectoryGroupModeMismatch: ad_transitive against OpenLDAP
// (not Active Directory) finds no groups for a known member: check
// --directory says so.
func TestCheckDirectoryGroupModeMismatch(t *testing.T) {
	s := startSlapd(t)
	cfg := writeConfig(t, func(c string) string {
		c = s.configure(c)
		return replace(`group_mode = "member"`, `group_mode = "ad_transitive"`)(c)
	})
	rep, _ := checkDir(t, cfg)
	d := rep.Directory
	found := false
	for _, w := range d.Warnings {
		found = found || strings.Contains(w, `directory.group_mode: "ad_transitive"`)
	}
	if !found {
		t.Fatalf("no group mode warning: %+v", d)
	}
	// The right mode for this server: no warning.
	rep, _ = checkDir(t, writeConfig(t, s.configure))
	if len(rep.Directory.Warnings) != 0 || rep.Directory.Sample == nil {
		t.Fatalf("member mode: %+v", rep.Directory)
	}
}

// TestCheckDirectoryJSONUnreachable: with --json, a directory that cannot
// be reached is reported in the object (ok false, the error) with exit 1,
// as without --json.
func TestCheckDirectoryJSONUnreachable(t *testing.T) {
	cfg, url := unreachableLDAPConfig(t)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"check", "--directory", "--json", "--config", cfg}, &out, &errb)
	var rep checkReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || code != exitFailure || errb.Len() > 0 {
		t.Fatalf("exit %d, %v\n%s%s", code, err, out.String(), errb.String())
	}
	if rep.OK || rep.Directory == nil || rep.Directory.Reachable || !strings.Contains(rep.Directory.Error, url) {
		t.Fatalf("%+v", rep.Directory)
	}
}
