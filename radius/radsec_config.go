package radius

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// RadSecConfig configures the RadSec listener (RADIUS over TLS, RFC 6614).
// It is embedded in Config: its keys live in the [radius] table.
type RadSecConfig struct {
	// RadSecListen is the RadSec TCP address, usually "[::]:2083" or
	// "0.0.0.0:2083" (the IANA port); empty (the default) turns RadSec off.
	RadSecListen string `toml:"radsec_listen"`
	// RadSecCert and RadSecKey are the certificate chain and key the
	// RadSec listener presents, when access points are to trust another CA
	// than the employees' supplicants do. Empty: the RADIUS server
	// certificate (trust.server_cert), reloaded with it.
	RadSecCert string `toml:"radsec_cert"`
	RadSecKey  string `toml:"radsec_key"`
	// RadSecIdleTimeout closes a connection that has sent nothing for that
	// long (Status-Server keepalives count); default 10m.
	RadSecIdleTimeout policy.Duration `toml:"radsec_idle_timeout"`
	// RadSecMaxConns bounds the RadSec connections open at once, TLS
	// handshakes included; default 256. Connections beyond it are closed
	// at once.
	RadSecMaxConns int `toml:"radsec_max_conns"`
	// RadSecMaxConnsPerIP bounds the connections open at once from one
	// IPv4 address or IPv6 /64, handshakes included, so that one host
	// holding handshakes open cannot take every place; default 32,
	// negative for no bound.
	RadSecMaxConnsPerIP int `toml:"radsec_max_conns_per_ip"`
	// RadSecClients are the access points (or proxies) allowed to connect,
	// identified by their client certificate.
	RadSecClients []RadSecClientConfig `toml:"radsec_client"`
}

// RadSecClientConfig is one kind of RadSec peer: the CA that issues its
// certificates (a trust anchor of its own, never an employee CA) and the
// names its certificates must carry.
type RadSecClientConfig struct {
	// Name identifies the access point (or group of them) in logs,
	// metrics and the audit trail; required and unique.
	Name string `toml:"name"`
	// CAFile holds the PEM certificates of the CA(s) that issue the
	// peers' client certificates (clientAuth EKU required).
	CAFile string `toml:"ca_file"`
	// Match lists the names a peer certificate must carry, one of them
	// suffices: "DNS:ap-*.example.com", "URI:…", "EMAIL:…", "IP:192.0.2.7"
	// (subject alternative names), "CN:ap-*" (subject common name) or
	// "SUBJECT:CN=ap1,O=Example" (the whole subject as RFC 2253 prints
	// it). "*" matches any run of characters, within one label for DNS;
	// DNS and EMAIL compare case-insensitively. Required: use "CN:*" to
	// admit every certificate of the CA.
	Match []string `toml:"match"`
	// CoA says the access points apply a CoA-Request with new VLAN
	// attributes; without it a session whose attributes change is
	// disconnected. Disconnect- and CoA-Requests travel over the peer's
	// RadSec connection (RFC 6614 section 2.5).
	CoA bool `toml:"coa"`
	// NoDynAuth turns Disconnect/CoA off for these peers (their sessions
	// are then not tracked for re-validation).
	NoDynAuth bool `toml:"no_dynauth"`
	// MaxConns bounds the connections of peers matching this entry;
	// default 16.
	MaxConns int `toml:"max_conns"`
}

// RadSec defaults.
const (
	DefaultRadSecIdleTimeout = 10 * time.Minute
	DefaultRadSecMaxConns    = 256
	DefaultRadSecConnsPerIP  = 32
	DefaultRadSecClientConns = 16
)

// radsecSecret is the shared secret of RADIUS over TLS (RFC 6614 2.3).
const radsecSecret = "radsec"

type radsecSettings struct {
	listen   string
	cert     *tls.Certificate // nil: the RADIUS server certificate
	idle     time.Duration
	maxConns int
	perIP    int // 0: no bound
	clients  []radsecClientSettings
	pool     *x509.CertPool // union of the clients' CAs, for the CertificateRequest
}

type radsecClientSettings struct {
	name     string
	roots    *x509.CertPool
	match    []namePattern
	maxConns int
	dyn      clientDyn
}

func (cfg *Config) radsecSettings() (*radsecSettings, error) {
	c := &cfg.RadSecConfig
	if c.RadSecListen == "" {
		if len(c.RadSecClients) > 0 {
			return nil, errors.New("radius: radsec_client is configured but radsec_listen is empty (set it, e.g. \"[::]:2083\")")
		}
		return nil, nil
	}
	if _, err := netip.ParseAddrPort(c.RadSecListen); err != nil && !strings.HasPrefix(c.RadSecListen, ":") {
		return nil, fmt.Errorf("radius: radsec_listen %q: want address:port, e.g. \"[::]:2083\"", c.RadSecListen)
	}
	rs := &radsecSettings{listen: c.RadSecListen, idle: c.RadSecIdleTimeout.Duration, maxConns: c.RadSecMaxConns, pool: x509.NewCertPool()}
	if rs.idle == 0 {
		rs.idle = DefaultRadSecIdleTimeout
	}
	if rs.idle < time.Second {
		return nil, fmt.Errorf("radius: radsec_idle_timeout %v: want at least 1s", rs.idle)
	}
	if rs.maxConns == 0 {
		rs.maxConns = DefaultRadSecMaxConns
	}
	if rs.maxConns < 1 {
		return nil, fmt.Errorf("radius: radsec_max_conns %d: must be positive", rs.maxConns)
	}
	switch rs.perIP = c.RadSecMaxConnsPerIP; {
	case rs.perIP == 0:
		rs.perIP = DefaultRadSecConnsPerIP
	case rs.perIP < 0:
		rs.perIP = 0
	}
	switch {
	case (c.RadSecCert == "") != (c.RadSecKey == ""):
		return nil, errors.New("radius: radsec_cert and radsec_key: set both or neither")
	case c.RadSecCert != "":
		kp, err := tls.LoadX509KeyPair(c.RadSecCert, c.RadSecKey)
		if err != nil {
			// The error of LoadX509KeyPair names files, never key bytes.
			return nil, fmt.Errorf("radius: radsec_cert/radsec_key: %w", err)
		}
		rs.cert = &kp
	}
	if len(c.RadSecClients) == 0 {
		return nil, errors.New("radius: radsec_listen is set but no [[radius.radsec_client]] is configured")
	}
	for i := range c.RadSecClients {
		rc, err := c.RadSecClients[i].compile(rs.pool)
		if err != nil {
			return nil, fmt.Errorf("radius: radsec_client[%d] %q: %w", i, c.RadSecClients[i].Name, err)
		}
		rs.clients = append(rs.clients, rc)
	}
	return rs, nil
}

func (c *RadSecClientConfig) compile(pool *x509.CertPool) (radsecClientSettings, error) {
	rc := radsecClientSettings{name: c.Name, maxConns: c.MaxConns, roots: x509.NewCertPool()}
	if rc.name == "" {
		return rc, errors.New("name: required")
	}
	if c.CAFile == "" {
		return rc, errors.New("ca_file: required (the CA that issues the access points' certificates)")
	}
	b, err := os.ReadFile(c.CAFile)
	if err != nil {
		return rc, fmt.Errorf("ca_file: %w", err)
	}
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		ca, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return rc, fmt.Errorf("ca_file %s: %w", c.CAFile, err)
		}
		rc.roots.AddCert(ca)
		pool.AddCert(ca)
		n++
	}
	if n == 0 {
		return rc, fmt.Errorf("ca_file %s: no PEM certificate", c.CAFile)
	}
	if len(c.Match) == 0 {
		return rc, errors.New("match: required (e.g. [\"DNS:ap-*.example.com\"], or [\"CN:*\"] for any certificate of the CA)")
	}
	for _, m := range c.Match {
		p, err := parseNamePattern(m)
		if err != nil {
			return rc, fmt.Errorf("match %q: %w", m, err)
		}
		rc.match = append(rc.match, p)
	}
	if rc.maxConns == 0 {
		rc.maxConns = DefaultRadSecClientConns
	}
	if rc.maxConns < 1 {
		return rc, fmt.Errorf("max_conns %d: must be positive", rc.maxConns)
	}
	if !c.NoDynAuth {
		// The port is only a marker: requests go over the connection.
		rc.dyn = clientDyn{port: DefaultCoAPort, coa: c.CoA}
	}
	return rc, nil
}

// namePattern is one compiled "TYPE:pattern" of RadSecClientConfig.Match.
type namePattern struct {
	kind string // DNS, URI, EMAIL, IP, CN, SUBJECT
	pat  string
	ip   netip.Addr
}

func parseNamePattern(s string) (namePattern, error) {
	kind, pat, ok := strings.Cut(s, ":")
	if !ok || pat == "" {
		return namePattern{}, errors.New("want TYPE:pattern with TYPE one of DNS, URI, EMAIL, IP, CN, SUBJECT")
	}
	p := namePattern{kind: strings.ToUpper(kind), pat: pat}
	switch p.kind {
	case "DNS", "EMAIL":
		p.pat = strings.ToLower(pat)
	case "URI", "CN", "SUBJECT":
	case "IP":
		a, err := netip.ParseAddr(pat)
		if err != nil {
			return p, fmt.Errorf("IP: %w", err)
		}
		p.ip = a.Unmap()
	default:
		return p, fmt.Errorf("unknown type %q: want DNS, URI, EMAIL, IP, CN or SUBJECT", kind)
	}
	return p, nil
}

// matches reports whether the certificate carries a name p admits.
func (p *namePattern) matches(c *x509.Certificate) bool {
	switch p.kind {
	case "DNS":
		for _, n := range c.DNSNames {
			if glob(p.pat, strings.ToLower(n), '.') {
				return true
			}
		}
	case "EMAIL":
		for _, n := range c.EmailAddresses {
			if glob(p.pat, strings.ToLower(n), 0) {
				return true
			}
		}
	case "URI":
		for _, u := range c.URIs {
			if glob(p.pat, u.String(), 0) {
				return true
			}
		}
	case "IP":
		for _, ip := range c.IPAddresses {
			if a, ok := netip.AddrFromSlice(ip); ok && a.Unmap() == p.ip {
				return true
			}
		}
	case "CN":
		return c.Subject.CommonName != "" && glob(p.pat, c.Subject.CommonName, 0)
	case "SUBJECT":
		return c.Subject.String() == p.pat
	}
	return false
}

// glob matches s against pat, where '*' stands for any run of characters
// other than sep (sep 0: any run at all).
func glob(pat, s string, sep byte) bool {
	for len(pat) > 0 {
		if pat[0] != '*' {
			if len(s) == 0 || s[0] != pat[0] {
				return false
			}
			pat, s = pat[1:], s[1:]
			continue
		}
		for len(pat) > 0 && pat[0] == '*' {
			pat = pat[1:]
		}
		for i := 0; i <= len(s); i++ {
			if glob(pat, s[i:], sep) {
				return true
			}
			if i < len(s) && sep != 0 && s[i] == sep {
				return false
			}
		}
		return false
	}
	return len(s) == 0
}
