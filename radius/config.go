package radius

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// Config configures the RADIUS server. cmd decodes the [radius] TOML table
// straight into it. Zero values mean the documented default.
type Config struct {
	// Listen is the authentication address; default ":1812".
	Listen string `toml:"listen"`
	// AccountingListen is the accounting address; default ":1813".
	// "off" disables accounting.
	AccountingListen string `toml:"accounting_listen"`
	// AccountingFile receives one JSON line per Accounting-Request; empty
	// means accounting requests are acknowledged but not recorded.
	AccountingFile string `toml:"accounting_file"`
	// Accounting says where accounting records go: "file" (default:
	// AccountingFile), "store" (the shared store of several nodes, through
	// the node's durable spool; needs [store] backend = "postgres") or
	// "both" (the store's spool, then the file). A record is acknowledged
	// once it is durable in the spool; with "both", a record the file
	// cannot take is logged, not refused (the store has it). gatehouse
	// serve defaults it to "store" when the store backend is postgres.
	Accounting string `toml:"accounting"`
	// FragmentSize is the largest EAP packet sent to a peer; default 1024,
	// allowed 256..3000. A smaller Framed-MTU in the request (minus 4 bytes
	// of EAPOL header) lowers it for that conversation.
	FragmentSize int `toml:"fragment_size"`
	// TLSMaxVersion is "1.2" or "1.3"; empty means 1.3.
	TLSMaxVersion string `toml:"tls_max_version"`
	// MaxSessions bounds concurrent EAP conversations; default 65536. When
	// full, the least recently active conversation that has not sent TLS
	// data yet is evicted first, then the least recently active one.
	MaxSessions int `toml:"max_sessions"`
	// MaxHalfOpenPerClient bounds the conversations of one [[radius.client]]
	// entry that have not sent TLS data yet; default MaxSessions/4. A
	// client at the bound loses its own oldest half-open conversation to a
	// new one, so a flood of conversation starts through one access point
	// does not evict the others' users.
	MaxHalfOpenPerClient int `toml:"max_half_open_per_client"`
	// MaxSessionBytes bounds the memory the conversations hold
	// (reassembly buffers, unsent output, running TLS handshakes); default
	// 268435456 (256 MiB). When exceeded, the conversations holding the
	// most are evicted first (a peer stuffing fragments into half-open
	// conversations, not the logins under way, which hold a few KiB).
	MaxSessionBytes int64 `toml:"max_session_bytes"`
	// SessionIdleTimeout ends a conversation without activity; default 30s.
	SessionIdleTimeout policy.Duration `toml:"session_idle_timeout"`
	// SessionTimeout bounds a whole conversation; default 2m.
	SessionTimeout policy.Duration `toml:"session_timeout"`
	// Workers is the number of request-handling goroutines; default
	// 4×GOMAXPROCS (at least 8). The server holds max(1024, 64×Workers)
	// datagram buffers and reads a datagram only when one is free: a
	// burst waits in the socket's receive buffer. Workers serve the
	// sources in turn (fair queueing, at most 128 datagrams queued per
	// source address and port); a source whose queue is full while the
	// receive buffer is more than half full loses its datagrams (reason
	// "overload") so that it cannot crowd out the others.
	Workers int `toml:"workers"`
	// ReceiveBuffer is the size in bytes asked for each RADIUS socket's
	// kernel receive buffer (SO_RCVBUF), where bursts wait; default
	// 8388608 (8 MiB), negative leaves the system default. As root (or
	// with CAP_NET_ADMIN) it may exceed net.core.rmem_max; otherwise the
	// kernel caps it and the server logs a warning with the size granted.
	ReceiveBuffer int `toml:"receive_buffer"`
	// MaxPendingDecisions bounds the authorizations (certificate checks,
	// directory lookups, rules) running at once; default 1024. They run
	// apart from the Workers, so a slow directory does not stall other
	// conversations, Status-Server or retransmissions. When full, the
	// request that finished a handshake is dropped (reason
	// "decisions_busy") and decided when the NAS retransmits it.
	MaxPendingDecisions int `toml:"max_pending_decisions"`
	// ReplyMessage, when set, is sent as Reply-Message in Access-Rejects.
	// The reason for a reject is only logged.
	ReplyMessage string `toml:"reply_message"`
	// Clients are the NAS clients allowed to talk to the server.
	Clients []ClientConfig `toml:"client"`

	// RevalidateEvery is how often every live Wi-Fi session (known from
	// accounting) is authorized again, see Server.Revalidate; default 60s,
	// negative disables the periodic run.
	RevalidateEvery policy.Duration `toml:"revalidate_every"`
	// DynAuthTimeout is the wait for a NAS's answer to a Disconnect- or
	// CoA-Request before it is sent again; default 2s.
	DynAuthTimeout policy.Duration `toml:"dynauth_timeout"`
	// DynAuthRetries is how often an unanswered Disconnect- or
	// CoA-Request is sent again; default 2, negative means never.
	DynAuthRetries int `toml:"dynauth_retries"`
	// MaxWiFiSessions bounds the table of accepted Wi-Fi sessions kept for
	// re-validation; default 65536. When full, the oldest accept without
	// accounting goes first, then the session heard from least recently.
	MaxWiFiSessions int `toml:"max_wifi_sessions"`

	// TLSSessionCache bounds the TLS sessions kept on the server for
	// resumption; default 65536, the oldest go first. Supplicants get a
	// 16-byte ticket naming their session instead of the session itself.
	TLSSessionCache int `toml:"tls_session_cache"`
	// TLSSessionCacheBytes bounds the memory of those sessions (mostly
	// the clients' certificate chains, ~1-12 KB each); default 64 MiB.
	TLSSessionCacheBytes int `toml:"tls_session_cache_bytes"`
	// TLSSessionLifetime is how long after a login its TLS session may be
	// resumed; default 24h. Every resumption is authorized again.
	TLSSessionLifetime policy.Duration `toml:"tls_session_lifetime"`

	// RadSec (RADIUS over TLS, RFC 6614): see RadSecConfig (radsec_config.go).
	RadSecConfig
}

// ClientConfig is one NAS client (or a network of them) and its secret.
type ClientConfig struct {
	// Name labels the client (NAS) in logs and metrics.
	Name string `toml:"name"`
	// Network is a CIDR prefix or a single address.
	Network string `toml:"network"`
	// Secret is the shared secret; prefer SecretFile.
	Secret string `toml:"secret"`
	// SecretFile names a file holding the secret (trailing newline
	// stripped).
	SecretFile string `toml:"secret_file"`

	// CoAPort is the NAS's dynamic authorization port (RFC 5176), where
	// Disconnect- and CoA-Requests are sent. Absent (nil) means 3799;
	// zero or negative turns dynamic authorization off for this client
	// (its sessions are then not tracked).
	CoAPort *int `toml:"coa_port"`
	// CoA says the NAS applies a CoA-Request carrying new VLAN attributes
	// to a live session. Without it, a session whose Wi-Fi attributes
	// change is disconnected (and re-authenticates into the new VLAN).
	CoA bool `toml:"coa"`
	// CoAToNASIP sends dynamic authorization requests to the session's
	// NAS-IP-Address instead of the source address of its RADIUS packets,
	// but only when that address lies inside this client's network.
	CoAToNASIP bool `toml:"coa_to_nas_ip"`
}

// Defaults.
const (
	DefaultListen           = ":1812"
	DefaultAccountingListen = ":1813"
	DefaultFragmentSize     = 1024
	DefaultMaxSessions      = 65536
	DefaultIdleTimeout      = 30 * time.Second
	DefaultSessionTimeout   = 2 * time.Minute
	DefaultPendingDecisions = 1024
	DefaultReceiveBuffer    = 8 << 20
	DefaultMaxSessionBytes  = 256 << 20
)

// settings is a validated Config with defaults filled in.
type settings struct {
	listen, acctListen string
	acctFile           string
	acctMode           string
	fragSize           int
	tlsMax             uint16
	maxSessions        int
	maxSessionBytes    int64
	halfOpenMax        int
	idle, total        time.Duration
	workers            int
	maxDecisions       int
	rcvBuf             int // bytes; <= 0: system default
	replyMessage       string
	clients            []client
	dyn                dynSettings
	radsec             *radsecSettings // nil: RadSec off
}

type client struct {
	name   string
	prefix netip.Prefix
	secret []byte
	dyn    clientDyn
}

func (cfg *Config) settings() (*settings, error) {
	s := &settings{
		listen:          or(cfg.Listen, DefaultListen),
		acctListen:      or(cfg.AccountingListen, DefaultAccountingListen),
		acctFile:        cfg.AccountingFile,
		fragSize:        cfg.FragmentSize,
		maxSessions:     cfg.MaxSessions,
		maxSessionBytes: cfg.MaxSessionBytes,
		halfOpenMax:     cfg.MaxHalfOpenPerClient,
		idle:            cfg.SessionIdleTimeout.Duration,
		total:           cfg.SessionTimeout.Duration,
		workers:         cfg.Workers,
		maxDecisions:    cfg.MaxPendingDecisions,
		rcvBuf:          cfg.ReceiveBuffer,
		replyMessage:    cfg.ReplyMessage,
	}
	switch s.acctMode = or(cfg.Accounting, AccountingFile); s.acctMode {
	case AccountingFile, AccountingStore, AccountingBoth:
	default:
		return nil, fmt.Errorf("radius: accounting %q: want \"file\", \"store\" or \"both\"", cfg.Accounting)
	}
	if s.fragSize == 0 {
		s.fragSize = DefaultFragmentSize
	}
	if s.fragSize < 256 || s.fragSize > 3000 {
		return nil, fmt.Errorf("radius: fragment_size %d: want 256..3000", s.fragSize)
	}
	switch cfg.TLSMaxVersion {
	case "", "1.3":
		s.tlsMax = 0x0304
	case "1.2":
		s.tlsMax = 0x0303
	default:
		return nil, fmt.Errorf("radius: tls_max_version %q: want \"1.2\" or \"1.3\"", cfg.TLSMaxVersion)
	}
	if s.maxSessions == 0 {
		s.maxSessions = DefaultMaxSessions
	}
	if s.maxSessions < 1 {
		return nil, fmt.Errorf("radius: max_sessions %d: must be positive", s.maxSessions)
	}
	if s.halfOpenMax == 0 {
		s.halfOpenMax = max(1, s.maxSessions/4)
	}
	if s.halfOpenMax < 1 {
		return nil, fmt.Errorf("radius: max_half_open_per_client %d: must be positive", s.halfOpenMax)
	}
	if s.maxSessionBytes == 0 {
		s.maxSessionBytes = DefaultMaxSessionBytes
	}
	if s.maxSessionBytes < 1<<20 {
		return nil, fmt.Errorf("radius: max_session_bytes %d: want at least 1048576 (1 MiB)", s.maxSessionBytes)
	}
	if s.idle == 0 {
		s.idle = DefaultIdleTimeout
	}
	if s.total == 0 {
		s.total = DefaultSessionTimeout
	}
	if s.idle < 0 || s.total < 0 {
		return nil, errors.New("radius: session timeouts must be positive")
	}
	if s.workers == 0 {
		s.workers = max(8, 4*runtime.GOMAXPROCS(0))
	}
	if s.workers < 1 {
		return nil, fmt.Errorf("radius: workers %d: must be positive", s.workers)
	}
	if s.rcvBuf == 0 {
		s.rcvBuf = DefaultReceiveBuffer
	}
	if s.maxDecisions == 0 {
		s.maxDecisions = DefaultPendingDecisions
	}
	if s.maxDecisions < 1 {
		return nil, fmt.Errorf("radius: max_pending_decisions %d: must be positive", s.maxDecisions)
	}
	if len(cfg.Clients) == 0 && len(cfg.RadSecClients) == 0 {
		return nil, errors.New("radius: no client configured ([[radius.client]] or [[radius.radsec_client]])")
	}
	for i, c := range cfg.Clients {
		cl, err := c.compile()
		if err != nil {
			return nil, fmt.Errorf("radius: client[%d] %q: %w", i, c.Name, err)
		}
		s.clients = append(s.clients, cl)
	}
	dyn, err := cfg.dynSettings()
	if err != nil {
		return nil, err
	}
	s.dyn = dyn
	if s.radsec, err = cfg.radsecSettings(); err != nil {
		return nil, err
	}
	return s, nil
}

func (c *ClientConfig) compile() (client, error) {
	cl := client{name: c.Name}
	if cl.name == "" {
		cl.name = c.Network
	}
	p, err := netip.ParsePrefix(c.Network)
	if err != nil {
		a, err2 := netip.ParseAddr(c.Network)
		if err2 != nil {
			return cl, fmt.Errorf("network %q: not a prefix or address", c.Network)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	cl.prefix = p.Masked()
	switch {
	case c.Secret != "" && c.SecretFile != "":
		return cl, errors.New("set secret or secret_file, not both")
	case c.SecretFile != "":
		b, err := os.ReadFile(c.SecretFile)
		if err != nil {
			return cl, fmt.Errorf("secret_file: %w", err)
		}
		cl.secret = []byte(strings.TrimRight(string(b), "\r\n"))
	default:
		cl.secret = []byte(c.Secret)
	}
	if len(cl.secret) == 0 {
		return cl, errors.New("empty secret")
	}
	if cl.dyn, err = c.dynAuth(); err != nil {
		return cl, err
	}
	return cl, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
