package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

// examplePKI maps the files config.example.toml names (under
// /etc/gatehouse) to test PKI files standing in for them; "" is a secret.
var examplePKI = policytest.ExamplePKI()

// TestExampleConfigChecks: the production example passes `check` once the
// files it names exist (test PKI at its paths, /etc/gatehouse and
// /var/lib/gatehouse moved into a temp dir), and names only absolute paths
// under those two directories.
func TestExampleConfigChecks(t *testing.T) {
	raw, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.Index(line, `"/`); i >= 0 && !strings.HasPrefix(line[i+1:], "/etc/gatehouse/") && !strings.HasPrefix(line[i+1:], "/var/lib/gatehouse") {
			t.Errorf("config.example.toml: path outside /etc/gatehouse and /var/lib/gatehouse: %s", line)
		}
		if strings.Contains(line, "testdata/") {
			t.Errorf("config.example.toml names test data: %s", line)
		}
	}
	root := t.TempDir()
	for dst, src := range examplePKI {
		b := []byte("a-long-random-shared-secret-0123456789\n")
		if src != "" {
			if b, err = os.ReadFile(filepath.Join("../../testdata/pki", src)); err != nil {
				t.Fatal(err)
			}
		}
		p := filepath.Join(root, "etc/gatehouse", dst)
		os.MkdirAll(filepath.Dir(p), 0o750)
		if err := os.WriteFile(p, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	s := strings.NewReplacer(`"/etc/gatehouse/`, `"`+root+`/etc/gatehouse/`, `"/var/lib/gatehouse`, `"`+root+`/var/lib/gatehouse`).Replace(string(raw))
	f := filepath.Join(root, "etc/gatehouse/config.toml")
	if err := os.WriteFile(f, []byte(s), 0o640); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"check", "-config", f}, &out, &errb); code != exitOK {
		t.Fatalf("check exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"directory:     ldap [ldaps://", "radius:        auth :1812, accounting :1813, 2 clients", "capabilities:  none"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCapabilities(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*fileConfig)
		want string
	}{
		{"demo", func(*fileConfig) {}, ""},
		{"vpn", func(c *fileConfig) { c.VPN.Enabled = true }, "CAP_NET_ADMIN (vpn.enabled: the TUN device)"},
		{"radius on 812", func(c *fileConfig) { c.Radius.Listen = "0.0.0.0:812" }, `CAP_NET_BIND_SERVICE (radius.listen "0.0.0.0:812": port below 1024)`},
		{"enroll on 443", func(c *fileConfig) { c.VPN.Enabled = true; c.VPN.EnrollListen = ":443" },
			`CAP_NET_ADMIN (vpn.enabled: the TUN device); CAP_NET_BIND_SERVICE (vpn.enroll_listen ":443": port below 1024)`},
		{"enroll on 443, vpn off", func(c *fileConfig) { c.VPN.EnrollListen = ":443" }, ""},
		{"metrics on 80", func(c *fileConfig) { c.Server.MetricsListen = "127.0.0.1:80" }, `CAP_NET_BIND_SERVICE (server.metrics_listen "127.0.0.1:80": port below 1024)`},
	} {
		l, err := loadConfig("../../config.toml")
		if err != nil {
			t.Fatal(err)
		}
		tc.edit(&l.cfg)
		if got := strings.Join(capabilities(&l.cfg), "; "); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
