package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// writeConfig writes config.toml's text with edits applied into a temp dir
// whose paths point at the repository's testdata, and returns its path. An
// edit that appends after the closing [end] (a new section) gets [end]
// moved back to the end, as an admin adding a section would.
func writeConfig(t testing.TB, edit func(string) string) string {
	t.Helper()
	if edit != nil {
		e := edit
		edit = func(s string) string { return keepEndLast(e(s)) }
	}
	return writeConfigRaw(t, edit)
}

// keepEndLast moves a closing [end] line that content follows to the end.
func keepEndLast(s string) string {
	const end = "\n[end]\n"
	i := strings.LastIndex(s, end)
	if i < 0 || strings.TrimSpace(s[i+len(end):]) == "" {
		return s
	}
	return s[:i+1] + strings.TrimLeft(s[i+len(end):], "\n") + end
}

// writeConfigRaw is writeConfig without keepEndLast.
func writeConfigRaw(t testing.TB, edit func(string) string) string {
	t.Helper()
	b, err := os.ReadFile("../../config.toml")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs("../..")
	s := strings.ReplaceAll(string(b), `"testdata/`, `"`+root+`/testdata/`)
	s = strings.Replace(s, `state_dir = "state"`, `state_dir = "`+filepath.ToSlash(t.TempDir())+`"`, 1)
	s = strings.Replace(s, `metrics_listen = "127.0.0.1:9812"`, `metrics_listen = "127.0.0.1:0"`, 1)
	if edit != nil {
		s = edit(s)
	}
	f := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func replace(old, new string) func(string) string {
	return func(s string) string {
		if !strings.Contains(s, old) {
			panic("config.toml no longer contains " + old)
		}
		return strings.Replace(s, old, new, 1)
	}
}

func TestShippedConfigLoads(t *testing.T) {
	l, err := loadConfig("../../config.toml")
	if err != nil {
		t.Fatalf("config.toml: %v", err)
	}
	if got := l.policy.Summary().Rules; len(got) != 3 {
		t.Fatalf("rules %v", got)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
		want string
	}{
		{"unknown key", replace(`log_level = "info"`, `log_levl = "info"`), "config.toml: server.log_levl: unknown key"},
		{"unknown key in rule", replace(`name = "sales"`, "name = \"sales\"\nvlan = 3"), "config.toml: policy[2].vlan: unknown key"},
		{"wrong type", replace(`listen_port = 51820`, `listen_port = "51820"`), `config.toml: vpn.listen_port: "51820": want an integer, not a string`},
		{"bad duration", replace(`session_timeout = "8h", class`, `session_timeout = "8 hours", class`), "session_timeout"},
		{"syntax", replace(`[radius]`, `[radius`), "config.toml: expected '.' or ']' to end table name"},
		{"bad prefix", replace(`"10.20.0.5 tcp/22,443"`, `"10.0/8 tcp/22"`), `config.toml: policy[1].vpn.allow[1]: "10.0/8 tcp/22": bad prefix`},
		{"bad vlan", replace(`vlan = "30"`, `vlan = "0"`), `config.toml: policy[0].wifi.vlan: "0": VLAN number must be 1-4094`},
		{"missing CA", replace(`employee-root.pem", "`, `nope.pem", "`), "config.toml: trust.client_ca[0]"},
		{"bad log level", replace(`log_level = "info"`, `log_level = "loud"`), `config.toml: server.log_level: "loud"`},
		{"bad radius network", replace(`network = "127.0.0.0/8"`, `network = "127.0.0/8"`), "127.0.0/8"},
		{"bad coa_port", replace(`coa_port = 3799`, `coa_port = 70000`), "config.toml: radius.client[0].coa_port: 70000: want 1..65535"},
		{"bad revalidate_every", replace(`revalidate_every = "60s"`, `revalidate_every = "1ms"`), "revalidate_every"},
		{"bad directory backend", replace(`backend = "file"`, `backend = "nis"`), "nis"},
		{"bad audit", replace(`audit = "file"`, `audit = "syslog"`), `config.toml: server.audit: "syslog": must be file, stdout or off`},
		{"bad cores", replace(`cores = "adaptive"`, `cores = "2"`), `config.toml: server.cores: "2": must be adaptive or all`},
		{"weak min_rsa_bits", replace(`min_rsa_bits = 2048`, `min_rsa_bits = 1024`), `config.toml: trust.min_rsa_bits: "1024": must be at least 2048`},
		{"empty groups", replace(`groups = ["sales"]`, `groups = []`), `config.toml: policy[2].groups: empty list matches nobody; write everyone = true to match every directory entry`},
		{"everyone with groups", replace(`groups = ["sales"]`, "groups = [\"sales\"]\neveryone = true"), `config.toml: policy[2].everyone: "true": everyone = true and groups exclude each other`},
		{"rule without condition", replace(`groups = ["sales"]`, ``), `config.toml: policy[2]: the rule names no groups and no identity conditions; write everyone = true`},
		{"negative audit keep", replace(`audit_keep = 10`, `audit_keep = -1`), "server.audit_max_size_mb and audit_keep must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := writeConfig(t, tt.edit)
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{"check", "-config", f}, &out, &errb)
			// Line numbers are asserted in TestConfigErrorLines.
			if got := withoutLines(errb.String()); code != exitUsage || !strings.Contains(got, tt.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", code, errb.String(), exitUsage, tt.want)
			}
			if strings.Contains(errb.String(), "testing123") {
				t.Fatal("secret in error output")
			}
		})
	}
}

func TestCheck(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"check", "-config", "../../config.toml"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"config.toml: OK", "rules:         thermostats, engineering, sales", "revocation:    require, 6 CRLs", "client keys:   RSA ≥ 2048 bits", "radius:", "Disconnect/CoA for 1 of 1 clients"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestLDAPCAFileStrict: the directory's CA file is read strictly too.
func TestLDAPCAFileStrict(t *testing.T) {
	ca, _ := os.ReadFile("../../testdata/pki/server-ca.pem")
	key, _ := os.ReadFile("../../testdata/pki/alice.key")
	bad := filepath.Join(t.TempDir(), "ldap-ca.pem")
	if err := os.WriteFile(bad, append(ca, key...), 0o600); err != nil {
		t.Fatal(err)
	}
	f := writeConfig(t, replace(`timeout = "5s"`, "timeout = \"5s\"\n[directory.ldap]\nca_file = \""+filepath.ToSlash(bad)+"\""))
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"check", "-config", f}, &out, &errb)
	want := `config.toml: directory.ldap.ca_file: "` + bad + `": PEM block 2 is "PRIVATE KEY", want "CERTIFICATE"`
	if code != exitUsage || !strings.Contains(withoutLines(errb.String()), want) {
		t.Fatalf("exit %d, stderr:\n%s\nwant %q", code, errb.String(), want)
	}
	if strings.Contains(errb.String(), "BEGIN") {
		t.Fatal("key material in the error")
	}
}

// TestCheckCRLBundle: check counts every CRL of a PEM bundle.
func TestCheckCRLBundle(t *testing.T) {
	var bundle []byte
	for _, f := range []string{"employee-root", "employee-int", "device-ca", "long-int1", "long-int2", "long-int3"} {
		b, err := os.ReadFile("../../testdata/pki/" + f + ".crl")
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, b...)
	}
	bf := filepath.Join(t.TempDir(), "all.crl")
	if err := os.WriteFile(bf, bundle, 0o600); err != nil {
		t.Fatal(err)
	}
	f := writeConfig(t, func(s string) string {
		i := strings.Index(s, "crl = [")
		j := strings.Index(s[i:], "]")
		return s[:i] + `crl = ["` + filepath.ToSlash(bf) + `"]` + s[i+j+1:]
	})
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"check", "-config", f}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "revocation:    require, 6 CRLs") {
		t.Fatalf("check output:\n%s", out.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"check", "-nope"}, {"explain", "-config", "../../config.toml"}, {"check", "extra"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"check", "-config", "/nonexistent.toml"}, &out, &errb); code != exitUsage {
		t.Errorf("missing config: exit %d", code)
	}
	out.Reset()
	if code := run(context.Background(), []string{"version"}, &out, &errb); code != exitOK || !strings.HasPrefix(out.String(), "gatehouse ") {
		t.Errorf("version: %d %q", code, out.String())
	}
}

func FuzzLoadConfig(f *testing.F) {
	b, err := os.ReadFile("../../config.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b))
	f.Add("[[policy]]\nname = \"x\"\nvpn = { allow = [\"10.0.0.0/8 tcp/1-2\"] }\n")
	f.Add("[trust]\nclient_ca = 3\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, s string) {
		p := filepath.Join(dir, "fuzz.toml")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := loadConfig(p)
		if err == nil && l.policy == nil {
			t.Fatal("no error and no policy")
		}
		if err != nil && !strings.HasPrefix(err.Error(), p) {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

var fileLineRE = regexp.MustCompile(`config\.toml:\d+: `)

// withoutLines drops the line numbers of config.toml errors.
func withoutLines(s string) string { return fileLineRE.ReplaceAllString(s, "config.toml: ") }
