package radius

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

func TestConfigSettings(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("from-file\n"), 0o600)
	base := func() Config {
		return Config{Clients: []ClientConfig{{Name: "ap", Network: "10.0.0.0/8", Secret: "s"}}}
	}
	s, err := func() (*settings, error) { c := base(); return c.settings() }()
	if err != nil {
		t.Fatal(err)
	}
	if s.listen != ":1812" || s.acctListen != ":1813" || s.fragSize != 1024 || s.tlsMax != 0x0304 ||
		s.maxSessions != 65536 || s.idle != 30*time.Second || s.total != 2*time.Minute || s.workers < 8 ||
		s.maxDecisions != 1024 || s.maxSessionBytes != 256<<20 || s.halfOpenMax != 16384 || s.rcvBuf != 8<<20 {
		t.Errorf("defaults: %+v", s)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		err  string // "" = ok
	}{
		{"secret file", func(c *Config) { c.Clients[0].Secret, c.Clients[0].SecretFile = "", secretFile }, ""},
		{"single address", func(c *Config) { c.Clients[0].Network = "192.0.2.7" }, ""},
		{"tls 1.2", func(c *Config) { c.TLSMaxVersion = "1.2" }, ""},
		{"durations", func(c *Config) { c.SessionTimeout = policy.Duration{Duration: time.Minute} }, ""},
		{"bad tls", func(c *Config) { c.TLSMaxVersion = "1.1" }, "tls_max_version"},
		{"small fragment", func(c *Config) { c.FragmentSize = 100 }, "fragment_size"},
		{"big fragment", func(c *Config) { c.FragmentSize = 5000 }, "fragment_size"},
		{"bad network", func(c *Config) { c.Clients[0].Network = "10.0.0.0/33" }, `client[0] "ap": network`},
		{"both secrets", func(c *Config) { c.Clients[0].SecretFile = secretFile }, "not both"},
		{"no secret", func(c *Config) { c.Clients[0].Secret = "" }, "empty secret"},
		{"missing secret file", func(c *Config) { c.Clients[0].Secret, c.Clients[0].SecretFile = "", dir+"/nope" }, "secret_file"},
		{"no clients", func(c *Config) { c.Clients = nil }, "no client"},
		{"negative sessions", func(c *Config) { c.MaxSessions = -1 }, "max_sessions"},
		{"negative decisions", func(c *Config) { c.MaxPendingDecisions = -1 }, "max_pending_decisions"},
		{"negative half-open", func(c *Config) { c.MaxHalfOpenPerClient = -1 }, "max_half_open_per_client"},
		{"small session budget", func(c *Config) { c.MaxSessionBytes = 4096 }, "max_session_bytes"},
		{"system receive buffer", func(c *Config) { c.ReceiveBuffer = -1 }, ""},
	} {
		c := base()
		tc.mod(&c)
		s, err := c.settings()
		if tc.err == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			if tc.name == "secret file" && string(s.clients[0].secret) != "from-file" {
				t.Errorf("secret file: %q", s.clients[0].secret)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "radius: ") {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.err)
		}
		if err != nil && strings.Contains(err.Error(), "from-file") {
			t.Errorf("%s: secret in error", tc.name)
		}
	}
}

func TestNASLookup(t *testing.T) {
	tb := newNASTable([]client{
		{name: "wide", prefix: mustPrefix("10.0.0.0/8"), secret: []byte("a")},
		{name: "narrow", prefix: mustPrefix("10.1.2.0/24"), secret: []byte("b")},
		{name: "v6", prefix: mustPrefix("fd00::/8"), secret: []byte("c")},
	})
	for addr, want := range map[string]string{"10.1.2.3": "narrow", "10.9.9.9": "wide", "::ffff:10.1.2.3": "narrow", "fd00::1": "v6", "192.0.2.1": ""} {
		n := tb.lookup(mustAddr(addr))
		got := ""
		if n != nil {
			got = n.name
		}
		if got != want {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
}
