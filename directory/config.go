package directory

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Default values used when a Config field is left at its zero value.
const (
	DefaultUserFilter   = "(&(objectClass=person)(|(userPrincipalName={upn})(mail={email})))"
	DefaultDeviceFilter = "(&(objectClass=device)(serialNumber={serial}))"
	DefaultGroupMode    = "member"
	DefaultNestedDepth  = 8
	DefaultCacheTTL     = 5 * time.Minute
	DefaultNegativeTTL  = time.Minute
	DefaultCacheSize    = 10000
	DefaultStaleMaxAge  = time.Hour
	DefaultTimeout      = 5 * time.Second
	DefaultReload       = 10 * time.Second
	DefaultPoolSize     = 4
	DefaultKeepAlive    = 30 * time.Second
	DefaultProbeEvery   = 30 * time.Second
	DefaultPageSize     = 500

	maxNestedDepth = 64
)

// Config configures a Directory. The toml tags give the names used in the
// [directory] table of gatehouse's config file; this package reads no TOML.
// Every zero value means the documented default.
type Config struct {
	// Backend is "file" (an LDIF file) or "ldap". Required.
	Backend string `toml:"backend"`
	// File is the LDIF file the "file" backend serves.
	File string `toml:"file"`
	// Reload is how often the file backend checks File for changes and
	// re-reads it (atomically: a broken file keeps the old contents).
	// Default 10s; negative disables polling (Reload() still works).
	// `gatehouse serve` disables it and watches the file itself: it reads
	// it once it has stopped changing, then re-validates live access.
	Reload Duration `toml:"reload"`

	// UserFilter and DeviceFilter are LDAP filter templates (RFC 4515) used
	// by both backends. Placeholders {id} {upn} {email} {cn} {dns} {serial}
	// {fingerprint} are replaced by the identity's fields, escaped. An item
	// whose placeholder field is absent or empty is replaced by a filter
	// that matches nothing, so `(mail={email})` never matches when the
	// certificate has no e-mail. Defaults: DefaultUserFilter,
	// DefaultDeviceFilter.
	UserFilter   string `toml:"user_filter"`
	DeviceFilter string `toml:"device_filter"`
	// BaseDN is where entries and groups are searched. Required for "ldap";
	// for "file", empty means the whole file.
	BaseDN string `toml:"base_dn"`

	// GroupMode says how group membership is found: "member" (default:
	// search groups whose member attribute holds the entry DN, then nested
	// groups breadth-first), "uniquemember" (same with uniqueMember),
	// "memberof" (read the entry's memberOf attribute; nesting is then
	// followed through member), "memberuid" (posixGroup memberUid holds the
	// entry's uid; not nested) or "ad_transitive" (Active Directory's
	// LDAP_MATCHING_RULE_IN_CHAIN, one query, nested by the server).
	// The file backend follows uniqueMember for "uniquemember", memberUid
	// for "memberuid", and member (nested) for every other mode.
	GroupMode string `toml:"group_mode"`
	// NestedDepth is how many levels of group nesting are followed beyond
	// direct membership. Default 8; negative means direct groups only;
	// at most 64.
	NestedDepth int `toml:"nested_depth"`

	// CacheTTL is how long an answer that found an entry is reused.
	// Default 5m; negative disables the cache.
	CacheTTL Duration `toml:"cache_ttl"`
	// NegativeCacheTTL is how long "no entry" (and "ambiguous") is reused.
	// Default 1m; negative disables negative caching.
	NegativeCacheTTL Duration `toml:"negative_cache_ttl"`
	// CacheSize bounds the number of cached answers. Default 10000.
	CacheSize int `toml:"cache_size"`
	// OnOutage is "deny" (default: a lookup during an outage fails with an
	// error whose Unavailable() is true, so the decision is deny) or
	// "serve_stale" (serve a cached answer no older than StaleMaxAge).
	OnOutage string `toml:"on_outage"`
	// StaleMaxAge bounds the age of a stale answer. Default 1h.
	StaleMaxAge Duration `toml:"stale_max_age"`
	// Timeout bounds one lookup against the server, all queries included.
	// Default 5s.
	Timeout Duration `toml:"timeout"`

	LDAP LDAPConfig `toml:"ldap"`
}

// LDAPConfig configures the "ldap" backend.
type LDAPConfig struct {
	// URLs are ldap:// or ldaps:// servers, tried in order; the first is the
	// primary, returned to as soon as it is healthy again. Required.
	URLs []string `toml:"urls"`
	// StartTLS upgrades ldap:// connections with StartTLS (required unless
	// InsecurePlaintext is set).
	StartTLS bool `toml:"start_tls"`
	// InsecurePlaintext allows ldap:// without StartTLS (tests, localhost).
	InsecurePlaintext bool `toml:"insecure_plaintext"`
	// CAFile is a PEM file of CAs that verify the server; default the
	// system roots.
	CAFile string `toml:"ca_file"`
	// ServerName is the name verified in the server's certificate; default
	// the host of each URL.
	ServerName string `toml:"server_name"`
	// BindDN and BindPasswordFile are the service account. Both empty means
	// an anonymous connection. The password file's first line is used.
	BindDN           string `toml:"bind_dn"`
	BindPasswordFile string `toml:"bind_password_file"`
	// PoolSize is the number of long-lived connections. Default 4.
	PoolSize int `toml:"pool_size"`
	// KeepAlive is the TCP keepalive period. Default 30s; negative disables.
	KeepAlive Duration `toml:"keepalive"`
	// ProbeEvery is how often idle connections are health-checked and a
	// failed-over pool tries to return to the primary. Default 30s.
	ProbeEvery Duration `toml:"probe_every"`
	// PageSize is the page size of group searches (RFC 2696). Default 500.
	PageSize int `toml:"page_size"`
}

// Duration is a time.Duration written as a string such as "5m" or "90s".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText formats the duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// settings is a validated Config with defaults applied.
type settings struct {
	cfg         Config
	userTmpl    *template
	deviceTmpl  *template
	nestedDepth int // levels beyond direct; 0 = direct only
	cacheTTL    time.Duration
	negativeTTL time.Duration
	cacheSize   int
	serveStale  bool
	staleMaxAge time.Duration
	timeout     time.Duration
	reload      time.Duration
	poolSize    int
	keepAlive   time.Duration
	probeEvery  time.Duration
	pageSize    int
	groupMode   string
	baseDN      string
	now         func() time.Time // the clock of cache ages and the outage policy; tests replace it before use
}

func configErr(key string, format string, args ...any) error {
	return fmt.Errorf("directory: %s: %s", key, fmt.Sprintf(format, args...))
}

func durOr(d Duration, def time.Duration) time.Duration {
	if d.Duration == 0 {
		return def
	}
	return d.Duration
}

// validate checks cfg and applies defaults. Errors name the config key.
func validate(cfg Config) (*settings, error) {
	s := &settings{cfg: cfg, now: time.Now}
	var errs []error // every error, not only the first
	switch cfg.Backend {
	case "file":
		if cfg.File == "" {
			errs = append(errs, configErr("file", "required with backend \"file\""))
		}
	case "ldap":
		if cfg.BaseDN == "" {
			errs = append(errs, configErr("base_dn", "required with backend \"ldap\""))
		}
	case "":
		errs = append(errs, configErr("backend", "required: \"file\" or \"ldap\""))
	default:
		errs = append(errs, configErr("backend", "%q: must be \"file\" or \"ldap\"", cfg.Backend))
	}
	if cfg.BaseDN != "" {
		if _, err := canonDN(cfg.BaseDN); err != nil {
			errs = append(errs, configErr("base_dn", "%q: %v", cfg.BaseDN, err))
		}
	}
	s.baseDN = cfg.BaseDN
	var err error
	uf := cfg.UserFilter
	if uf == "" {
		uf = DefaultUserFilter
	}
	if s.userTmpl, err = parseTemplate(uf); err != nil {
		errs = append(errs, configErr("user_filter", "%q: %v", uf, err))
	}
	df := cfg.DeviceFilter
	if df == "" {
		df = DefaultDeviceFilter
	}
	if s.deviceTmpl, err = parseTemplate(df); err != nil {
		errs = append(errs, configErr("device_filter", "%q: %v", df, err))
	}

	s.groupMode = strings.ToLower(cfg.GroupMode)
	switch s.groupMode {
	case "":
		s.groupMode = DefaultGroupMode
	case "member", "uniquemember", "memberof", "memberuid", "ad_transitive":
	default:
		errs = append(errs, configErr("group_mode", "%q: must be memberof, member, uniquemember, memberuid or ad_transitive", cfg.GroupMode))
	}
	switch {
	case cfg.NestedDepth == 0:
		s.nestedDepth = DefaultNestedDepth
	case cfg.NestedDepth < 0:
		s.nestedDepth = 0
	case cfg.NestedDepth > maxNestedDepth:
		errs = append(errs, configErr("nested_depth", "%d: at most %d", cfg.NestedDepth, maxNestedDepth))
	default:
		s.nestedDepth = cfg.NestedDepth
	}

	s.cacheTTL = durOr(cfg.CacheTTL, DefaultCacheTTL)
	s.negativeTTL = durOr(cfg.NegativeCacheTTL, DefaultNegativeTTL)
	switch {
	case cfg.CacheSize == 0:
		s.cacheSize = DefaultCacheSize
	case cfg.CacheSize < 0:
		errs = append(errs, configErr("cache_size", "%d: must not be negative", cfg.CacheSize))
	default:
		s.cacheSize = cfg.CacheSize
	}
	switch cfg.OnOutage {
	case "", "deny":
	case "serve_stale":
		s.serveStale = true
	default:
		errs = append(errs, configErr("on_outage", "%q: must be \"deny\" or \"serve_stale\"", cfg.OnOutage))
	}
	if s.staleMaxAge = durOr(cfg.StaleMaxAge, DefaultStaleMaxAge); s.staleMaxAge < 0 {
		errs = append(errs, configErr("stale_max_age", "%v: must not be negative", cfg.StaleMaxAge.Duration))
	}
	if s.timeout = durOr(cfg.Timeout, DefaultTimeout); s.timeout < 0 {
		errs = append(errs, configErr("timeout", "%v: must not be negative", cfg.Timeout.Duration))
	}
	s.reload = durOr(cfg.Reload, DefaultReload)

	if cfg.Backend == "ldap" {
		if err := validateLDAP(s, cfg.LDAP); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

func validateLDAP(s *settings, c LDAPConfig) error {
	var errs []error
	if len(c.URLs) == 0 {
		errs = append(errs, configErr("ldap.urls", "required with backend \"ldap\""))
	}
	for i, raw := range c.URLs {
		key := fmt.Sprintf("ldap.urls[%d]", i)
		u, err := url.Parse(raw)
		if err != nil {
			errs = append(errs, configErr(key, "%q: %v", raw, err))
			continue
		}
		switch u.Scheme {
		case "ldaps":
			if c.StartTLS {
				errs = append(errs, configErr(key, "%q: start_tls with ldaps://", raw))
				continue
			}
		case "ldap":
			if !c.StartTLS && !c.InsecurePlaintext {
				errs = append(errs, configErr(key, "%q: ldap:// needs start_tls = true (or insecure_plaintext = true)", raw))
				continue
			}
		default:
			errs = append(errs, configErr(key, "%q: unsupported scheme", raw))
			continue
		}
		if u.Host == "" {
			errs = append(errs, configErr(key, "%q: no host", raw))
			continue
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			errs = append(errs, configErr(key, "%q: only scheme://host[:port] is supported", raw))
			continue
		}
	}
	if c.CAFile != "" {
		if _, err := os.Stat(c.CAFile); err != nil {
			errs = append(errs, configErr("ldap.ca_file", "%v", err))
		}
	}
	if (c.BindDN == "") != (c.BindPasswordFile == "") {
		errs = append(errs, configErr("ldap.bind_dn", "bind_dn and bind_password_file go together"))
	} else if c.BindDN != "" {
		if _, err := canonDN(c.BindDN); err != nil {
			errs = append(errs, configErr("ldap.bind_dn", "%q: %v", c.BindDN, err))
		}
		if _, err := readPassword(c.BindPasswordFile); err != nil {
			errs = append(errs, configErr("ldap.bind_password_file", "%v", err))
		}
	}
	switch {
	case c.PoolSize == 0:
		s.poolSize = DefaultPoolSize
	case c.PoolSize < 0 || c.PoolSize > 256:
		errs = append(errs, configErr("ldap.pool_size", "%d: must be 1..256", c.PoolSize))
	default:
		s.poolSize = c.PoolSize
	}
	s.keepAlive = durOr(c.KeepAlive, DefaultKeepAlive)
	if s.probeEvery = durOr(c.ProbeEvery, DefaultProbeEvery); s.probeEvery <= 0 {
		errs = append(errs, configErr("ldap.probe_every", "%v: must be positive", c.ProbeEvery.Duration))
	}
	switch {
	case c.PageSize == 0:
		s.pageSize = DefaultPageSize
	case c.PageSize < 0:
		errs = append(errs, configErr("ldap.page_size", "%d: must not be negative", c.PageSize))
	default:
		s.pageSize = c.PageSize
	}
	return errors.Join(errs...)
}

// readPassword reads the first line of a password file. The error never
// contains the file's contents.
func readPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s: empty password", path)
	}
	return line, nil
}
