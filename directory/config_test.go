package directory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	must(t, os.WriteFile(pw, []byte("s3cret\n"), 0o600))
	empty := filepath.Join(dir, "empty")
	must(t, os.WriteFile(empty, nil, 0o600))
	ldapCfg := func(f func(*Config)) Config {
		c := Config{Backend: "ldap", BaseDN: "dc=example,dc=com", LDAP: LDAPConfig{URLs: []string{"ldaps://ldap.example.com"}}}
		f(&c)
		return c
	}
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{}, `directory: backend: required: "file" or "ldap"`},
		{Config{Backend: "sql"}, `directory: backend: "sql": must be "file" or "ldap"`},
		{Config{Backend: "file"}, `directory: file: required with backend "file"`},
		{Config{Backend: "ldap"}, `directory: base_dn: required with backend "ldap"`},
		{ldapCfg(func(c *Config) { c.LDAP.URLs = []string{"ldaps://a", "ftp://x"} }), `directory: ldap.urls[1]: "ftp://x": unsupported scheme`},
		{ldapCfg(func(c *Config) { c.LDAP.URLs = nil }), `directory: ldap.urls: required with backend "ldap"`},
		{ldapCfg(func(c *Config) { c.LDAP.URLs = []string{"ldap://a"} }), `directory: ldap.urls[0]: "ldap://a": ldap:// needs start_tls = true (or insecure_plaintext = true)`},
		{ldapCfg(func(c *Config) { c.LDAP.StartTLS = true }), `directory: ldap.urls[0]: "ldaps://ldap.example.com": start_tls with ldaps://`},
		{ldapCfg(func(c *Config) { c.LDAP.URLs = []string{"ldaps://h/dc=x?cn"} }), `directory: ldap.urls[0]: "ldaps://h/dc=x?cn": only scheme://host[:port] is supported`},
		{ldapCfg(func(c *Config) { c.LDAP.BindDN = "cn=x" }), `directory: ldap.bind_dn: bind_dn and bind_password_file go together`},
		{ldapCfg(func(c *Config) { c.LDAP.BindDN = "cn=x"; c.LDAP.BindPasswordFile = empty }), `directory: ldap.bind_password_file: ` + empty + `: empty password`},
		{ldapCfg(func(c *Config) { c.LDAP.PoolSize = -1 }), `directory: ldap.pool_size: -1: must be 1..256`},
		{ldapCfg(func(c *Config) { c.LDAP.ProbeEvery = Duration{-time.Second} }), `directory: ldap.probe_every: -1s: must be positive`},
		{ldapCfg(func(c *Config) { c.BaseDN = "not a dn" }), `directory: base_dn: "not a dn": dn: at byte 4: missing '=' after attribute type "not"`},
		{ldapCfg(func(c *Config) { c.GroupMode = "nested" }), `directory: group_mode: "nested": must be memberof, member, uniquemember, memberuid or ad_transitive`},
		{ldapCfg(func(c *Config) { c.NestedDepth = 65 }), `directory: nested_depth: 65: at most 64`},
		{ldapCfg(func(c *Config) { c.OnOutage = "allow" }), `directory: on_outage: "allow": must be "deny" or "serve_stale"`},
		{ldapCfg(func(c *Config) { c.CacheSize = -1 }), `directory: cache_size: -1: must not be negative`},
		{ldapCfg(func(c *Config) { c.UserFilter = "(mail={mail})" }), `directory: user_filter: "(mail={mail})": unknown placeholder {mail}`},
		{ldapCfg(func(c *Config) { c.UserFilter = "{email}" }), `directory: user_filter: "{email}": placeholder {email} is not inside a filter item such as (attr={email})`},
		{ldapCfg(func(c *Config) { c.DeviceFilter = "(&(cn={cn})" }), `directory: device_filter: "(&(cn={cn})": LDAP Result Code 201 "Filter Compile Error": ldap: unexpected end of filter`},
		{ldapCfg(func(c *Config) { c.LDAP.CAFile = filepath.Join(dir, "nope.pem") }), `directory: ldap.ca_file: stat ` + filepath.Join(dir, "nope.pem") + `: no such file or directory`},
		{Config{Backend: "file", File: filepath.Join(dir, "nope.ldif")}, `directory: file: open ` + filepath.Join(dir, "nope.ldif") + `: no such file or directory`},
	}
	for _, tc := range cases {
		_, err := New(tc.cfg, nil)
		if err == nil || strings.Split(err.Error(), "\n")[0] != tc.want {
			t.Errorf("New(%+v)\n got %v\nwant %s", tc.cfg, err, tc.want)
		}
	}
	// Every error at once, each on its own line, in the order of the keys.
	_, err := New(ldapCfg(func(c *Config) { c.CacheSize = -1; c.OnOutage = "x"; c.LDAP.PoolSize = 999 }), nil)
	want := "directory: cache_size: -1: must not be negative\n" +
		`directory: on_outage: "x": must be "deny" or "serve_stale"` + "\n" +
		"directory: ldap.pool_size: 999: must be 1..256"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	// A valid config with a password file never leaks it.
	c := ldapCfg(func(c *Config) { c.LDAP.BindDN = "cn=svc,dc=example,dc=com"; c.LDAP.BindPasswordFile = pw })
	if _, err := New(c, nil); err != nil {
		t.Fatal(err)
	}
}

func TestConfigDefaults(t *testing.T) {
	s, err := validate(Config{Backend: "ldap", BaseDN: "dc=x", LDAP: LDAPConfig{URLs: []string{"ldap://h"}, StartTLS: true}})
	must(t, err)
	if s.groupMode != "member" || s.nestedDepth != 8 || s.cacheTTL != 5*time.Minute || s.negativeTTL != time.Minute ||
		s.cacheSize != 10000 || s.serveStale || s.staleMaxAge != time.Hour || s.timeout != 5*time.Second ||
		s.poolSize != 4 || s.keepAlive != 30*time.Second || s.probeEvery != 30*time.Second || s.pageSize != 500 {
		t.Fatalf("defaults: %+v", s)
	}
	if s.userTmpl.src != DefaultUserFilter || s.deviceTmpl.src != DefaultDeviceFilter {
		t.Fatal("default filters")
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	must(t, d.UnmarshalText([]byte("90s")))
	if d.Duration != 90*time.Second {
		t.Fatal(d)
	}
	b, _ := d.MarshalText()
	if string(b) != "1m30s" {
		t.Fatal(string(b))
	}
	if d.UnmarshalText([]byte("soon")) == nil {
		t.Fatal("bad duration accepted")
	}
}
