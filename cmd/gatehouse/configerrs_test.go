package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// lineOf returns the 1-based line of file that contains s (the first).
func lineOf(t *testing.T, file, s string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%s has no line with %q", file, s)
	return 0
}

// TestConfigAllErrorsAtOnce: a file with mistakes in every stage —
// a type error in one rule, an unknown key, a bad value the policy
// compiler finds, bad [radius] and [vpn] values their packages find, a bad
// [server] value — is reported whole in one run, every error as
// file:line: section.key: value: problem.
func TestConfigAllErrorsAtOnce(t *testing.T) {
	f := writeConfig(t, func(s string) string {
		s = replace(`log_level = "info"`, `log_levl = "info"`)(s)
		s = replace(`audit = "file"`, `audit = "syslog"`)(s)
		s = replace(`wifi = { vlan = "30", session_timeout = "24h", filter_id = "iot-only" }`, `wifi = { vlan = "30", session_timeout = 24, filter_id = "iot-only" }`)(s)
		s = replace(`vpn = { allow = ["10.30.0.0/24 tcp/443"] }`, `vpn = { allow = ["10.30.0/24 tcp/443"] }`)(s)
		s = replace(`fragment_size = 1020 `, `fragment_size = 100 `)(s)
		s = replace(`coa_port = 3799 `, `coa_port = 70000`)(s)
		s = replace(`enabled = false`, `enabled = true`)(s)
		s = replace(`listen_port = 51820`, `listen_port = 70000`)(s)
		s = replace(`on_outage = "deny"`, `on_outage = "never"`)(s)
		s = replace(`negative_cache_ttl = "1m"`, "negative_cache_ttl = \"1m\"\ncache_size = -1")(s)
		return s
	})
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"check", "--config", f}, &out, &errb)
	if code != exitUsage {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	want := []string{
		fmt.Sprintf("%s:%d: server.log_levl: unknown key", f, lineOf(t, f, "log_levl")),
		fmt.Sprintf("%s:%d: policy[0].wifi.session_timeout: time: missing unit in duration", f, lineOf(t, f, "session_timeout = 24,")),
		fmt.Sprintf(`%s:%d: policy[2].vpn.allow[0]: "10.30.0/24 tcp/443": bad prefix`, f, lineOf(t, f, `10.30.0/24`)),
		fmt.Sprintf(`%s:%d: server.audit: "syslog": must be file, stdout or off`, f, lineOf(t, f, `audit = "syslog"`)),
		fmt.Sprintf(`%s:%d: radius.fragment_size: 100: want 256..3000`, f, lineOf(t, f, `fragment_size = 100`)),
		fmt.Sprintf(`%s:%d: vpn.listen_port: 70000 out of range`, f, lineOf(t, f, `listen_port = 70000`)),
		fmt.Sprintf(`%s:%d: directory.on_outage: "never": must be "deny" or "serve_stale"`, f, lineOf(t, f, `on_outage = "never"`)),
		fmt.Sprintf(`%s:%d: directory.cache_size: -1: must not be negative`, f, lineOf(t, f, `cache_size = -1`)),
	}
	got := errb.String()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q", w)
		}
	}
	// The rule that did not decode is not also reported half-decoded.
	if strings.Count(got, "policy[0]") != 1 {
		t.Errorf("policy[0] reported %d times", strings.Count(got, "policy[0]"))
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", got)
	}
}

// TestConfigErrorLines: each error names the line that sets the key, for
// keys in tables, arrays of tables, inline tables and after multi-line
// arrays.
func TestConfigErrorLines(t *testing.T) {
	src := `deny_all = false
[server]
log_level = "info"
allow = [
  "a",
  "b = c",
]
audit = "x" # comment

[[policy]]
name = "a"

[[policy]]
name = "b"
wifi = { vlan = 10 }

[policy.vpn]
allow = ["1"]

[[radius.client]]
name = "x"
[[radius.client]]
name = "y"
secret = "s"
[end]
`
	kl := locateKeys([]byte(src))
	for key, want := range map[string]int{
		"server":                  2,
		"server.audit":            8,
		"server.allow":            4,
		"policy[0].name":          11,
		"policy[1]":               13,
		"policy[1].name":          14,
		"policy[1].wifi.vlan":     15,
		"policy[1].vpn.allow[0]":  18,
		"radius.client[1].secret": 24,
		"radius.client[0]":        20,
		"radius.client.secret":    24,
		"nothing.here":            0,
	} {
		if got := kl.line(key); got != want {
			t.Errorf("line(%s) = %d, want %d", key, got, want)
		}
	}
	if v := kl.value["server.audit"]; v != "x" {
		t.Errorf("value of server.audit = %q", v)
	}
}

// TestVLANInteger: vlan = 10 and vlan = "10" are the same; a float is a
// clear error naming the key and line.
func TestVLANInteger(t *testing.T) {
	f := writeConfig(t, replace(`wifi = { vlan = "10", session_timeout = "8h", class = "eng" }`, `wifi = { vlan = 10, session_timeout = "8h", class = "eng" }`))
	l, err := loadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if v := l.cfg.Policy[1].WiFi.VLAN; v != "10" {
		t.Fatalf("vlan = %q", v)
	}
	f = writeConfig(t, replace(`wifi = { vlan = "10", session_timeout = "8h", class = "eng" }`, `wifi = { vlan = 10.5 }`))
	_, err = loadConfig(f)
	want := fmt.Sprintf("%s:%d: policy[1].wifi.vlan: want a string or an integer", f, lineOf(t, f, "vlan = 10.5"))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

// TestSecretNotInTypeError: a type error on a secret key does not repeat
// its value.
func TestSecretNotInTypeError(t *testing.T) {
	f := writeConfig(t, func(s string) string {
		return regexp.MustCompile(`(?m)^secret_file = .*$`).ReplaceAllString(s, `secret = 123456789`)
	})
	_, err := loadConfig(f)
	if err == nil || !strings.Contains(err.Error(), "radius.client[0].secret: want a string") || strings.Contains(err.Error(), "123456789") {
		t.Fatalf("err = %v", err)
	}
}

// TestRestartChanges: a reload names every restart-only section that
// changed, [server] and [store] included, and none when only the policy
// changed.
func TestRestartChanges(t *testing.T) {
	base, err := loadConfig(writeConfig(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		edit func(string) string
		want string
	}{
		{replace(`vlan = "20"`, `vlan = "21"`), ""},
		{replace(`log_level = "info"`, `log_level = "debug"`), "[server]"},
		{func(s string) string { return s + "[store]\nsite = \"b\"\n" }, "[store]"}, // writeConfig moves [end] last
		{func(s string) string {
			return replace(`fragment_size = 1020 `, `fragment_size = 1000 `)(replace(`audit_keep = 10`, `audit_keep = 11`)(s))
		}, "[server], [radius]"},
	} {
		l, err := loadConfig(writeConfig(t, tt.edit))
		if err != nil {
			t.Fatal(err)
		}
		l.cfg.Server.StateDir = base.cfg.Server.StateDir // each test config has its own temporary one
		if got := strings.Join(restartChanges(&base.cfg, &l.cfg), ", "); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

// TestServeReportsAllErrors: serve refuses a broken file with every error
// of it, like check.
func TestServeReportsAllErrors(t *testing.T) {
	f := writeConfig(t, func(s string) string {
		s = replace(`audit = "file"`, `audit = "syslog"`)(s)
		return replace(`fragment_size = 1020 `, `fragment_size = 100 `)(s)
	})
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"serve", "--config", f}, &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), "server.audit: \"syslog\"") || !strings.Contains(errb.String(), "radius.fragment_size: 100") {
		t.Fatalf("exit %d\n%s", code, errb.String())
	}
}

// FuzzLocateKeys: the key locator never panics, and every line it names
// is a line of the input.
func FuzzLocateKeys(f *testing.F) {
	f.Add([]byte("[server]\nlog_level = \"info\"\n[[policy]]\nname = \"a\"\nwifi = { vlan = 10 }\n[policy.vpn]\nallow = [\n\"x\",\n]\n[end]\n"))
	f.Add([]byte("a = '''\nb = 1\n'''\n[[x.y]]\n\"q.r\" = 2 # c\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kl := locateKeys(b)
		n := strings.Count(string(b), "\n") + 1
		for k, l := range kl.exact {
			if l < 1 || l > n {
				t.Fatalf("%s at line %d of %d", k, l, n)
			}
			kl.line(k + ".x[3]")
		}
	})
}

// FuzzDecodeConfig: decoding and error formatting never panic, whatever
// the file holds.
func FuzzDecodeConfig(f *testing.F) {
	b, err := os.ReadFile("../../config.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("[[policy]]\nname = 1\nwifi = { vlan = 1.5 }\n[[radius.client]]\nsecret = 2\n[end]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeConfig("fuzz.toml", b)
	})
}

// TestSectionAllErrors: radius and vpn stop at their first error; every
// error of theirs is still reported, and the configuration is not changed
// by the search.
func TestSectionAllErrors(t *testing.T) {
	f := writeConfig(t, func(s string) string {
		s = replace(`fragment_size = 1020 `, `fragment_size = 100 `)(s)
		s = replace(`coa_port = 3799 `, `coa_port = 70000`)(s)
		s = replace(`enabled = false`, `enabled = true`)(s)
		s = replace(`listen_port = 51820`, `listen_port = 70000`)(s)
		return replace(`address_pool = "100.96.0.0/16"`, `address_pool = "100.96.0.0/33"`)(s)
	})
	var out, errb bytes.Buffer
	run(context.Background(), []string{"check", "--config", f}, &out, &errb)
	for _, w := range []string{
		fmt.Sprintf("%s:%d: radius.fragment_size: 100", f, lineOf(t, f, "fragment_size = 100")),
		fmt.Sprintf("%s:%d: radius.client[0].coa_port: 70000", f, lineOf(t, f, "coa_port = 70000")),
		fmt.Sprintf("%s:%d: vpn.listen_port: 70000", f, lineOf(t, f, "listen_port = 70000")),
		fmt.Sprintf("%s:%d: vpn.address_pool: \"100.96.0.0/33\"", f, lineOf(t, f, "100.96.0.0/33")),
	} {
		if !strings.Contains(errb.String(), w) {
			t.Errorf("missing %q", w)
		}
	}
	if n := strings.Count(errb.String(), "vpn.address_pool"); n != 1 {
		t.Errorf("vpn.address_pool reported %d times", n)
	}
	if t.Failed() {
		t.Log(errb.String())
	}
	// resetKey copies what it changes.
	l, err := loadConfig(writeConfig(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	rc := l.cfg.Radius
	if !resetKey(reflect.ValueOf(&rc).Elem(), "client[0].coa_port") || rc.Clients[0].CoAPort != nil || l.cfg.Radius.Clients[0].CoAPort == nil {
		t.Fatal("resetKey changed the original or did not reset")
	}
	if resetKey(reflect.ValueOf(&rc).Elem(), "client[0]") || resetKey(reflect.ValueOf(&rc).Elem(), "nope") {
		t.Fatal("reset a table or an unknown key")
	}
}
