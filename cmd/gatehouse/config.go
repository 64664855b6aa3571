package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/gatehouse/gatehouse/policy"
)

// fileConfig is config.toml as decoded. Each section is the Config type of
// the package that uses it; only this package reads TOML.
type fileConfig struct {
	Server   serverConfig          `toml:"server"`
	Trust    policy.TrustConfig    `toml:"trust"`
	Identity policy.IdentityConfig `toml:"identity"`
	Policy   []policy.RuleConfig   `toml:"policy"`
	Store    storeConfig           `toml:"store"`
	sections
}

// serverConfig is the [server] section.
type serverConfig struct {
	LogLevel      string `toml:"log_level"`      // debug, info (default), warn, error
	LogFormat     string `toml:"log_format"`     // text (default) or json
	MetricsListen string `toml:"metrics_listen"` // /metrics, /healthz, /readyz (e.g. "127.0.0.1:9812"); empty = off
	// Pprof, when true, also serves Go's profiler (net/http/pprof,
	// /debug/pprof/) on metrics_listen, and only there; default false.
	// Profiles reveal no secrets but cost CPU: turn it on to investigate.
	Pprof    bool   `toml:"pprof"`
	StateDir string `toml:"state_dir"` // default /var/lib/gatehouse
	// Audit is where the audit trail goes: "file" (default:
	// state_dir/audit.jsonl), "stdout" or "off".
	Audit          string `toml:"audit"`
	AuditMaxSizeMB int    `toml:"audit_max_size_mb"` // rotate the file past this size; default 100
	AuditKeep      int    `toml:"audit_keep"`        // rotated files kept; default 10
	// AuthorizationTimeout bounds one authorization (directory lookups,
	// OCSP) at both doors, at login and at re-validation; default 10s.
	AuthorizationTimeout policy.Duration `toml:"authorization_timeout"`
	// MaxCutFraction: when one re-validation would cut more than this share
	// of at least 20 live VPN peers or Wi-Fi sessions for policy reasons
	// (not revocation or expiry), it cuts none of them until an operator
	// confirms with `gatehouse reload --confirm-cut`; default 0.25, 1 turns
	// the guard off.
	MaxCutFraction float64 `toml:"max_cut_fraction"`
	// MetricsMaxConns caps the metrics endpoint's open connections
	// (default 64) and MetricsMaxConnsPerIP those from one IPv4 address
	// or IPv6 /64 (default 8); negative: no cap. Over a cap a connection is
	// closed at once, counted in gatehouse_listener_rejected_total.
	MetricsMaxConns      int `toml:"metrics_max_conns"`
	MetricsMaxConnsPerIP int `toml:"metrics_max_conns_per_ip"`
}

// loaded is a decoded and compiled configuration.
type loaded struct {
	file   string
	cfg    fileConfig
	policy *policy.Policy
}

// configError is a configuration problem; its text starts with the file name.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

// loadConfig reads, strictly decodes and compiles a config file. Relative
// paths inside it are taken relative to the file's directory.
func loadConfig(file string) (*loaded, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, &configError{fmt.Sprintf("%s: %v", file, err)}
	}
	l := &loaded{file: file}
	md, err := toml.Decode(string(b), &l.cfg)
	if err != nil {
		return nil, &configError{fmt.Sprintf("%s: %s", file, strings.TrimPrefix(err.Error(), "toml: "))}
	}
	if und := md.Undecoded(); len(und) > 0 {
		var msgs []string
		for _, k := range und {
			msgs = append(msgs, fmt.Sprintf("%s: %s: unknown key", file, k))
		}
		return nil, &configError{strings.Join(msgs, "\n")}
	}
	dir := filepath.Dir(file)
	c := &l.cfg
	if c.Server.StateDir == "" {
		c.Server.StateDir = "/var/lib/gatehouse"
	}
	rel(dir, &c.Server.StateDir)
	relAll(dir, c.Trust.ClientCA)
	relAll(dir, c.Trust.Intermediates)
	relAll(dir, c.Trust.CRL)
	for i := range c.Trust.CASource {
		rel(dir, &c.Trust.CASource[i].CA)
	}
	rel(dir, &c.Trust.ServerCert)
	rel(dir, &c.Trust.ServerKey)
	for i := range c.Identity.Device {
		rel(dir, &c.Identity.Device[i].IssuerCA)
	}
	var errs []string
	rel(dir, &c.Store.DSNFile)
	errs = append(errs, c.Store.check(file)...)
	c.Store.defaults()
	if err := c.sections.prepare(dir); err != nil {
		errs = append(errs, prefixLines(file, err)...)
	}
	pc := policy.Config{Trust: c.Trust, Identity: c.Identity, Rules: c.Policy}
	p, err := policy.Compile(&pc)
	if err != nil {
		errs = append(errs, prefixLines(file, err)...)
	}
	switch c.Server.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Sprintf("%s: server.log_level: %q: must be debug, info, warn or error", file, c.Server.LogLevel))
	}
	switch c.Server.LogFormat {
	case "", "text", "json":
	default:
		errs = append(errs, fmt.Sprintf("%s: server.log_format: %q: must be text or json", file, c.Server.LogFormat))
	}
	switch c.Server.Audit {
	case "", "file", "stdout", "off":
	default:
		errs = append(errs, fmt.Sprintf("%s: server.audit: %q: must be file, stdout or off", file, c.Server.Audit))
	}
	if c.Server.AuditMaxSizeMB < 0 || c.Server.AuditKeep < 0 {
		errs = append(errs, fmt.Sprintf("%s: server.audit_max_size_mb and audit_keep must not be negative", file))
	}
	if len(errs) > 0 {
		return nil, &configError{strings.Join(errs, "\n")}
	}
	l.policy = p
	return l, nil
}

// prefixLines puts "file: " before each error of a joined error.
func prefixLines(file string, err error) []string {
	var out []string
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		for _, e := range j.Unwrap() {
			out = append(out, prefixLines(file, e)...)
		}
		return out
	}
	return []string{file + ": " + err.Error()}
}

func rel(dir string, p *string) {
	if *p != "" && !filepath.IsAbs(*p) {
		*p = filepath.Join(dir, *p)
	}
}

func relAll(dir string, ps []string) {
	for i := range ps {
		rel(dir, &ps[i])
	}
}

// readSecret returns an inline secret or the trimmed content of its file.
// Errors name the key, never the secret.
func readSecret(key, inline, file string) (string, error) {
	if inline != "" && file != "" {
		return "", fmt.Errorf("%s and %s_file are exclusive", key, key)
	}
	if file == "" {
		return inline, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s_file: %w", key, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s_file: %s: empty", key, file)
	}
	return s, nil
}
