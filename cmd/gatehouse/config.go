package main

import (
	"crypto/sha256"
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
	// DenyAll, a top-level key (before any table), says that a file with
	// no [[policy]] rule means it: everyone is denied. Without it a file
	// with no rule is refused (a truncated file looks like one), and with
	// it a file that has rules is an error.
	DenyAll  bool                  `toml:"deny_all"`
	Server   serverConfig          `toml:"server"`
	Trust    policy.TrustConfig    `toml:"trust"`
	Identity policy.IdentityConfig `toml:"identity"`
	Policy   []policy.RuleConfig   `toml:"policy"`
	Store    storeConfig           `toml:"store"`
	// End is the [end] table that must close the file: a file that does
	// not end with it was cut short (disk full, an interrupted copy, an
	// editor that writes in place) and is never loaded.
	End *struct{} `toml:"end"`
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
	Pprof bool `toml:"pprof"`
	// Cores is how many cores run Go code at once: "adaptive" (default)
	// uses one while the load fits in one and every core as soon as it
	// does not (package procs: the scheduler's cross-core wake-ups cost a
	// server of small requests 12–20% CPU); "all" always uses every core.
	// "Every core" is Go's default: the CPUs the process may use, within
	// its cgroup limit, or the GOMAXPROCS environment variable.
	Cores    string `toml:"cores"`
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
	sum    [sha256.Size]byte // of the bytes cfg was decoded from
	cfg    fileConfig
	policy *policy.Policy
	keys   *keyLines // where each key is set, for error lines
}

// locateAll turns errors "file: key: problem" into "file:line: key:
// problem".
func (l *loaded) locateAll(errs []string) []string {
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		for _, line := range strings.Split(e, "\n") {
			if rest, ok := strings.CutPrefix(line, l.file+": "); ok {
				line = locate(l.file, rest, l.keys)
			}
			out = append(out, line)
		}
	}
	return out
}

// configError is a configuration problem; its text starts with the file name.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

// causedError is a configError that keeps the errors behind it, for
// errors.Is: a trust file that could not be opened for lack of file
// descriptors is no configuration problem, and the reloader retries it.
type causedError struct {
	*configError
	causes []error
}

func (e *causedError) Unwrap() []error { return append([]error{e.configError}, e.causes...) }

func newCausedError(msg string, causes ...error) error {
	return &causedError{&configError{msg}, causes}
}

// endMarker is the last line every config file must have.
const endMarker = "[end]"

// loadConfig reads, strictly decodes and compiles a config file. Relative
// paths inside it are taken relative to the file's directory.
func loadConfig(file string) (*loaded, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, newCausedError(fmt.Sprintf("%s: %v", file, err), err)
	}
	return loadConfigBytes(file, b)
}

// loadConfigBytes decodes and compiles b, the content of file, read once by
// the caller: what is compiled is exactly what l.sum fingerprints.
func loadConfigBytes(file string, b []byte) (*loaded, error) {
	l, err := decodeConfig(file, b)
	if err != nil {
		return nil, err
	}
	if err := l.compile(); err != nil {
		return nil, err
	}
	return l, nil
}

// decodeConfig strictly decodes b, refuses a file that is not whole and
// resolves relative paths against the file's directory. It reads no other
// file.
func decodeConfig(file string, b []byte) (*loaded, error) {
	l := &loaded{file: file, sum: sha256.Sum256(b)}
	if !endsWithMarker(b) { // cheap, before decoding; checkWhole checks the decoded file
		return nil, errNoEnd(file)
	}
	l.keys = locateKeys(b)
	md, errs, failed, err := decodeSections(file, string(b), &l.cfg, l.keys)
	if err != nil {
		return nil, err
	}
	// A file must be whole before anything in it is believed: these come
	// before compiling, so a truncated file costs no file reads.
	if l.cfg.End == nil {
		return nil, errNoEnd(file)
	}
	if err := checkWhole(file, &l.cfg, md.Keys()); err != nil {
		if len(errs) == 0 {
			return nil, err
		}
		errs = append(errs, err.Error())
	}
	l.resolvePaths()
	if len(errs) > 0 {
		return l, &decodeError{&configError{strings.Join(errs, "\n")}, failed}
	}
	return l, nil
}

// decodeError is a file that did not decode whole: the keys under failed
// did not decode. The rest did, and `gatehouse check` goes on to check it.
type decodeError struct {
	*configError
	failed []string
}

func (e *decodeError) Unwrap() error { return e.configError }

// resolvePaths applies defaults to paths and resolves relative ones against
// the file's directory.
func (l *loaded) resolvePaths() {
	file := l.file
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
}

// compile checks the decoded sections and compiles the policy, reading the
// trust files.
func (l *loaded) compile() error {
	file, c := l.file, &l.cfg
	dir := filepath.Dir(file)
	var errs []string
	var causes []error
	rel(dir, &c.Store.DSNFile)
	errs = append(errs, c.Store.check(file)...)
	c.Store.defaults()
	errs = append(errs, checkWiFiStore(c, file)...)
	if err := c.sections.prepare(dir); err != nil {
		errs = append(errs, prefixLines(file, err)...)
		causes = append(causes, err)
	}
	errs = append(errs, radsecAnchorsApart(file, &c.Radius, &c.Trust)...)
	pc := policy.Config{Trust: c.Trust, Identity: c.Identity, Rules: c.Policy}
	p, err := policy.Compile(&pc)
	if err != nil {
		errs = append(errs, prefixLines(file, err)...)
		causes = append(causes, err)
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
	switch c.Server.Cores {
	case "", "adaptive", "all":
	default:
		errs = append(errs, fmt.Sprintf("%s: server.cores: %q: must be adaptive or all", file, c.Server.Cores))
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
		return newCausedError(strings.Join(l.locateAll(errs), "\n"), causes...)
	}
	l.policy = p
	return nil
}

func errNoEnd(file string) error {
	return &configError{fmt.Sprintf("%s: the file does not end with %s: refusing to load a file that may have been cut short (truncated file?); "+
		"write the complete file and make %s its last line", file, endMarker, endMarker)}
}

// endsWithMarker reports whether the last line of b that is neither blank
// nor a comment is the [end] table header.
func endsWithMarker(b []byte) bool {
	s := string(b)
	for s != "" {
		i := strings.LastIndexByte(strings.TrimRight(s, "\r\n"), '\n')
		line := s[i+1:]
		s = s[:max(i, 0)]
		if h := strings.IndexByte(line, '#'); h >= 0 {
			line = line[:h]
		}
		line = strings.Join(strings.Fields(line), "")
		if line != "" {
			return line == endMarker
		}
		if i < 0 {
			break
		}
	}
	return false
}

// checkWhole refuses a file that does not end with [end] (it was cut
// short) and a file without rules that does not say deny_all = true (a
// truncated file, or one written from an empty template, would otherwise
// deny everyone).
func checkWhole(file string, c *fileConfig, keys []toml.Key) error {
	if c.End == nil {
		return errNoEnd(file)
	}
	for i, k := range keys {
		if k.String() == "end" && i < len(keys)-1 {
			return &configError{fmt.Sprintf("%s: %s: must be the last table of the file (found %s after it)", file, endMarker, keys[i+1][0])}
		}
	}
	switch n := len(c.Policy); {
	case n == 0 && !c.DenyAll:
		return &configError{fmt.Sprintf("%s: refusing to load a policy with no rules (truncated file?); "+
			"write [[policy]] rules, or deny_all = true at the top of the file to deny everyone on purpose", file)}
	case n > 0 && c.DenyAll:
		return &configError{fmt.Sprintf("%s: deny_all: true, but the file has %d [[policy]] rules: remove one or the other", file, n)}
	}
	return nil
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
