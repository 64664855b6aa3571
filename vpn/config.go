package vpn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/gatehouse/gatehouse/netlimit"
	"github.com/gatehouse/gatehouse/policy"
)

// Config configures the VPN concentrator. cmd decodes the [vpn] table of the
// config file straight into it; zero values take the defaults given.
type Config struct {
	// Enabled turns the VPN on; New refuses a disabled Config.
	Enabled bool `toml:"enabled"`
	// Interface is the TUN interface name (default "gh0"); it also names
	// the UAPI socket, so `wg show gh0` works.
	Interface string `toml:"interface"`
	// ListenPort is the WireGuard UDP port (default 51820).
	ListenPort int `toml:"listen_port"`
	// Endpoint is the host:port clients dial, written into their config.
	// Required.
	Endpoint string `toml:"endpoint"`
	// AddressPool is the IPv4 tunnel prefix, e.g. "100.96.0.0/16". Its
	// first address is the server's; clients lease the rest. Required.
	AddressPool string `toml:"address_pool"`
	// AddressPool6 is an optional IPv6 tunnel prefix, e.g. "fd7a:6761::/64";
	// a client gets the address at the same offset as its IPv4 one.
	AddressPool6 string `toml:"address_pool6"`
	// EnrollListen is the enrollment API's HTTPS address (default ":8443").
	EnrollListen string `toml:"enroll_listen"`
	// DNS resolvers pushed to clients when their rule names none.
	DNS []string `toml:"dns"`
	// PersistentKeepalive, in seconds, written into client configs
	// (default 25; negative: none).
	PersistentKeepalive int `toml:"persistent_keepalive"`
	// RevalidateEvery is how often every peer's certificate is authorized
	// again (default 60s).
	RevalidateEvery policy.Duration `toml:"revalidate_every"`
	// ExpiredGrace is how long the record and address lease of a peer whose
	// certificate expired are kept (the peer suspended) before they are
	// deleted (default 720h, 30 days). Denials for any other reason
	// suspend and never delete.
	ExpiredGrace policy.Duration `toml:"expired_grace"`
	// MaxPeersPerIdentity limits how many certificates of one identity may
	// be enrolled at once (default 3). One certificate is one peer:
	// re-enrolling it with a new key replaces its old key.
	MaxPeersPerIdentity int `toml:"max_peers_per_identity"`
	// PrivateKeyFile holds the server's WireGuard private key (base64, as
	// `wg genkey` or `gatehouse vpn genkey` writes it). Set, it is never
	// generated: if it is missing (a volume not mounted), the server
	// refuses to start. Empty, the key is StateDir/wg.key, generated (mode
	// 0600) only at a first start, with no peer in the registry; missing
	// while peers are enrolled, the server refuses to start: restore it
	// from backup (a new key means every client must re-enroll). An
	// unreadable or malformed file is refused; one readable by group or
	// others is used with a warning.
	PrivateKeyFile string `toml:"private_key_file"`
	// MTU of the tunnel interface (default 1420).
	MTU int `toml:"mtu"`
	// MaxFlows bounds the connection tracker (default 262144).
	MaxFlows int `toml:"max_flows"`
	// EnrollMaxConns caps the enrollment API's open connections (default
	// 1024; negative: no cap). A connection over a cap is closed at once
	// and counted in gatehouse_listener_rejected_total{listener="enroll"}.
	EnrollMaxConns int `toml:"enroll_max_conns"`
	// EnrollMaxConnsPerIP caps them per client IPv4 address or IPv6 /64
	// (default 16; negative: no cap).
	EnrollMaxConnsPerIP int `toml:"enroll_max_conns_per_ip"`

	// StateDir holds the peer registry and the generated key. Set by cmd
	// (from [server] state_dir). Required.
	StateDir string `toml:"-"`
	// UseNetstack runs the data plane in wireguard-go's userspace network
	// stack instead of a kernel TUN (tests, rootless demos).
	UseNetstack bool `toml:"-"`
}

// settings is a validated Config.
type settings struct {
	Config
	pool, pool6       netip.Prefix
	gateway, gateway6 netip.Addr
	dns               []netip.Addr
	revalidate        time.Duration
	expiredGrace      time.Duration
	enrollCaps        netlimit.Config
}

// DefaultExpiredGrace is ExpiredGrace's default.
const DefaultExpiredGrace = 30 * 24 * time.Hour

// Default connection caps of the enrollment API.
const (
	DefaultEnrollMaxConns      = 1024
	DefaultEnrollMaxConnsPerIP = 16
)

func (c *Config) validate() (*settings, error) {
	if !c.Enabled {
		return nil, errors.New("vpn: config: not enabled")
	}
	s := &settings{Config: *c}
	if s.Interface == "" {
		s.Interface = "gh0"
	}
	if s.ListenPort == 0 {
		s.ListenPort = 51820
	}
	if s.ListenPort < 0 || s.ListenPort > 65535 {
		return nil, fmt.Errorf("vpn: config: listen_port %d out of range", s.ListenPort)
	}
	if s.EnrollListen == "" {
		s.EnrollListen = ":8443"
	}
	if s.PersistentKeepalive == 0 {
		s.PersistentKeepalive = 25
	}
	if s.MaxPeersPerIdentity <= 0 {
		s.MaxPeersPerIdentity = 3
	}
	s.enrollCaps = netlimit.Config{MaxConns: s.EnrollMaxConns, MaxConnsPerIP: s.EnrollMaxConnsPerIP}.WithDefaults(
		netlimit.Config{MaxConns: DefaultEnrollMaxConns, MaxConnsPerIP: DefaultEnrollMaxConnsPerIP})
	if s.MTU == 0 {
		s.MTU = 1420
	}
	s.revalidate = s.RevalidateEvery.Duration
	if s.revalidate <= 0 {
		s.revalidate = 60 * time.Second
	}
	s.expiredGrace = s.ExpiredGrace.Duration
	if s.expiredGrace < 0 {
		return nil, fmt.Errorf("vpn: config: expired_grace %v: negative", s.expiredGrace)
	}
	if s.expiredGrace == 0 {
		s.expiredGrace = DefaultExpiredGrace
	}
	if _, _, err := net.SplitHostPort(s.Endpoint); err != nil {
		return nil, fmt.Errorf("vpn: config: endpoint %q: want host:port: %w", s.Endpoint, err)
	}
	var err error
	if s.pool, err = netip.ParsePrefix(s.AddressPool); err != nil || !s.pool.Addr().Is4() {
		return nil, fmt.Errorf("vpn: config: address_pool %q: want an IPv4 prefix", s.AddressPool)
	}
	s.pool = s.pool.Masked()
	if s.pool.Bits() > 30 {
		return nil, fmt.Errorf("vpn: config: address_pool %q: too small", s.AddressPool)
	}
	s.gateway = s.pool.Addr().Next()
	if s.AddressPool6 != "" {
		if s.pool6, err = netip.ParsePrefix(s.AddressPool6); err != nil || !s.pool6.Addr().Is6() || s.pool6.Addr().Is4In6() {
			return nil, fmt.Errorf("vpn: config: address_pool6 %q: want an IPv6 prefix", s.AddressPool6)
		}
		s.pool6 = s.pool6.Masked()
		if 128-s.pool6.Bits() < 32-s.pool.Bits() {
			return nil, fmt.Errorf("vpn: config: address_pool6 %q: smaller than address_pool", s.AddressPool6)
		}
		s.gateway6 = s.pool6.Addr().Next()
	}
	for _, d := range s.DNS {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return nil, fmt.Errorf("vpn: config: dns %q: %w", d, err)
		}
		s.dns = append(s.dns, a)
	}
	if s.StateDir == "" {
		return nil, errors.New("vpn: config: no state directory")
	}
	return s, nil
}
