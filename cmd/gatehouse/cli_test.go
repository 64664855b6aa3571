package main

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/vpn"
)

// TestHelp: `gatehouse help` lists every command, one line each, and
// exits 0; no arguments prints the same list to stderr and exits 2.
func TestHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"help"}, &out, &errb); code != exitOK || errb.Len() > 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	for _, c := range commands {
		if !regexp.MustCompile(`(?m)^  ` + c.name + ` +\S.*$`).MatchString(out.String()) {
			t.Errorf("help lacks a line for %s:\n%s", c.name, out.String())
		}
	}
	out.Reset()
	if code := run(context.Background(), nil, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "  check ") {
		t.Fatalf("no args: exit %d, stderr %q", code, errb.String())
	}
}

// TestCommandHelp: `gatehouse CMD -h` (and --help) prints the command's
// usage and flags, every flag written --flag, to stdout and exits 0 with
// nothing on stderr.
func TestCommandHelp(t *testing.T) {
	for _, args := range [][]string{
		{"serve"}, {"check"}, {"explain"}, {"enroll"}, {"peers"}, {"peers", "remove"}, {"reload"},
		{"store", "status"}, {"store", "migrate"}, {"vpn"}, {"vpn", "genkey"}, {"bench", "radius"}, {"completion"},
	} {
		for _, h := range []string{"-h", "--help"} {
			var out, errb bytes.Buffer
			code := run(context.Background(), append(append([]string{}, args...), h), &out, &errb)
			name := strings.Join(args, " ")
			if code != exitOK || errb.Len() > 0 {
				t.Errorf("%s %s: exit %d, stderr %q", name, h, code, errb.String())
			}
			if !strings.HasPrefix(out.String(), "usage: gatehouse "+args[0]) {
				t.Errorf("%s %s: stdout %q", name, h, out.String())
			}
			if m := regexp.MustCompile(`(?m)^\s+-[a-z].*$|[\s(]-config\b`).FindString(out.String()); m != "" {
				t.Errorf("%s %s: single-dash flag %q", name, h, m)
			}
		}
	}
}

// TestFlagErrors: a bad flag is one error line naming the command and the
// flag in --flag style; exit 2.
func TestFlagErrors(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"check", "-bogus"}, &out, &errb)
	want := "gatehouse: check: flag provided but not defined: --bogus (--help lists the flags)\n"
	if code != exitUsage || errb.String() != want || out.Len() > 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q; want %q", code, out.String(), errb.String(), want)
	}
}

// TestCompletionBash: the bash script parses, and completing the first
// word offers every command; after "check" it offers check's flags.
func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"completion", "bash"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	script := filepath.Join(t.TempDir(), "gatehouse.bash")
	if err := os.WriteFile(script, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, b)
	}
	complete := func(words ...string) []string {
		t.Helper()
		var q []string
		for _, w := range words {
			q = append(q, "'"+w+"'")
		}
		prog := ". " + script + "\nCOMP_WORDS=(" + strings.Join(q, " ") + ")\nCOMP_CWORD=" + itoa(len(words)-1) +
			"\n_gatehouse\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		b, err := exec.Command(bash, "--norc", "--noprofile", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		return strings.Fields(string(b))
	}
	got := strings.Join(complete("gatehouse", ""), " ")
	for _, c := range commands {
		if !strings.Contains(" "+got+" ", " "+c.name+" ") {
			t.Errorf("first word: %q lacks %s", got, c.name)
		}
	}
	if got := complete("gatehouse", "ch"); strings.Join(got, " ") != "check" {
		t.Errorf("ch: %q", got)
	}
	if got := strings.Join(complete("gatehouse", "check", "--"), " "); got != "--config --directory --json --sample" {
		t.Errorf("check --: %q", got)
	}
	if got := strings.Join(complete("gatehouse", "peers", ""), " "); !strings.HasPrefix(got, "remove") {
		t.Errorf("peers: %q", got)
	}
	if got := strings.Join(complete("gatehouse", "vpn", ""), " "); !strings.HasPrefix(got, "genkey ") {
		t.Errorf("vpn: %q", got)
	}
	if got := strings.Join(complete("gatehouse", "vpn", "genkey", "--"), " "); got != "--config --force" {
		t.Errorf("vpn genkey --: %q", got)
	}
	out.Reset()
	if code := run(context.Background(), []string{"completion", "zsh"}, &out, &errb); code != exitOK || !strings.HasPrefix(out.String(), "#compdef gatehouse") {
		t.Fatalf("zsh: exit %d\n%s", code, out.String())
	}
	if zsh, err := exec.LookPath("zsh"); err == nil {
		os.WriteFile(script, out.Bytes(), 0o600)
		if b, err := exec.Command(zsh, "-n", script).CombinedOutput(); err != nil {
			t.Fatalf("zsh -n: %v\n%s", err, b)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// golden compares got with testdata/json/name, rewriting it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	f := filepath.Join("testdata", "json", name)
	if *update {
		if err := os.WriteFile(f, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(f)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if string(got) != string(want) {
		t.Fatalf("output differs from %s (run with -update):\n%s", f, got)
	}
}

// TestCheckJSONGolden: check --json on the shipped config and on a broken
// one; the schema (docs/cli.md) is pinned by golden files, and the exit
// codes are those without --json.
func TestCheckJSONGolden(t *testing.T) {
	for _, tt := range []struct {
		file, golden string
		code         int
	}{
		{"../../config.toml", "check-ok.json", exitOK},
		{"testdata/json/broken.toml", "check-errors.json", exitUsage},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), []string{"check", "--json", "--config", tt.file}, &out, &errb)
		if code != tt.code || errb.Len() > 0 {
			t.Fatalf("%s: exit %d, stderr %q", tt.file, code, errb.String())
		}
		golden(t, tt.golden, out.Bytes())
	}
}

// TestExplainJSONGolden: explain --json, allowed and denied.
func TestExplainJSONGolden(t *testing.T) {
	for _, tt := range []struct {
		cert string
		code int
	}{{"alice", exitOK}, {"carol", exitDenied}, {"thermostat-0001", exitOK}} {
		var out, errb bytes.Buffer
		code := run(context.Background(), []string{"explain", "--json", "--config", "../../config.toml", "--at", "2030-01-01T00:00:00Z",
			"--cert", "../../testdata/pki/" + tt.cert + ".pem"}, &out, &errb)
		if code != tt.code || errb.Len() > 0 {
			t.Fatalf("%s: exit %d, stderr %q", tt.cert, code, errb.String())
		}
		golden(t, "explain-"+tt.cert+".json", out.Bytes())
	}
}

// TestPeersJSONGolden: peers --json lists the registry, one active and one
// suspended peer, with the device down.
func TestPeersJSONGolden(t *testing.T) {
	old := uapiDir
	uapiDir = t.TempDir()
	t.Cleanup(func() { uapiDir = old })
	f := writeConfig(t, nil)
	l, err := loadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	st := vpn.NewFileStore(filepath.Join(l.cfg.Server.StateDir, "vpn", "peers"))
	if err := os.MkdirAll(st.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, who := range []string{"alice@corp.example.com", "bob@corp.example.com"} {
		r := &vpn.PeerRecord{Version: 1, Fingerprint: strings.Repeat(string(rune('a'+i)), 64), Identity: who, IdentityKey: "user/upn/" + who,
			NotAfter: at.AddDate(1, 0, 0), Address: netip.AddrFrom4([4]byte{100, 96, 0, byte(2 + i)}), Rule: "engineering",
			Enrolled: at, Updated: at, Validated: at}
		r.PublicKey[0] = byte(i + 1)
		if i == 1 {
			r.Suspended = &vpn.Suspension{Since: at.Add(time.Hour), Code: "no_rule", Reason: "no rule matches"}
		}
		if err := st.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"peers", "--json", "--config", f}, &out, &errb); code != exitOK || errb.Len() > 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	got := strings.ReplaceAll(out.String(), l.cfg.Server.StateDir, "STATE_DIR")
	got = strings.ReplaceAll(got, uapiDir, "UAPI_DIR")
	golden(t, "peers.json", []byte(got))
}
