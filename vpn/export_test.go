package vpn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// Exports for package vpn_test: the tests that need vpn/pgstore (which
// imports vpn, so package vpn's own tests cannot) reuse these harnesses.

type (
	TestEnv  = testEnv
	TestCA   = testCA
	FakeAuth = fakeAuth
	WGClient = wgClient
)

func NewTestCA(t testing.TB) *TestCA { return newTestCA(t) }

// Client issues a client certificate for cn.
func (ca *testCA) Client(t testing.TB, cn string) tls.Certificate { return ca.issue(t, cn, false) }

// Allow makes cn allowed with the engineering access; Revoke denies it as
// revoked.
func (f *fakeAuth) Allow(cn string) { f.set(cn, allow("engineering", engineeringAccess)) }
func (f *fakeAuth) Revoke(cn string) {
	f.set(cn, policy.Decision{Code: policy.CodeRevoked, Reason: "certificate revoked"})
}

// NewKeyFile writes a new server private key to path (a site's shared
// key file, made before its nodes start) and returns it.
func NewKeyFile(t testing.TB, path string) Key { return newKeyFile(t, path) }

// StartNode starts a netstack server in dir with the WireGuard key in
// keyFile (shared by the nodes of a site), calling before on it before Run.
// port 0 takes a free one.
func StartNode(t *testing.T, auth *FakeAuth, ca *TestCA, dir, keyFile string, port int, before func(*Server)) *TestEnv {
	return startServerWith(t, auth, ca, dir, func(c *Config) {
		c.PrivateKeyFile = keyFile
		if port != 0 {
			c.ListenPort = port
			c.Endpoint = fmt.Sprintf("127.0.0.1:%d", port)
		}
	}, before)
}

func (e *testEnv) Port() int { return e.cfg.ListenPort }

func (e *testEnv) Server() *Server                             { return e.srv }
func (e *testEnv) Endpoint() string                            { return e.cfg.Endpoint }
func (e *testEnv) Enroll(cert tls.Certificate) (string, error) { return e.enroll(cert) }
func (e *testEnv) Stop() error                                 { return e.stop() }

// ClientVia brings up a wireguard-go client from the wg-quick text,
// dialling endpoint instead of the one the text names.
func ClientVia(t *testing.T, text, endpoint string) *WGClient {
	q := parseWGQuick(t, text)
	q.Endpoint = endpoint
	return newWGClient(t, q)
}

// Reach checks a TCP echo to an allowed service through the tunnel.
func (c *wgClient) Reach(timeout time.Duration) error { return c.tcpEcho(svcOpen, 80, timeout) }

// Addr is the client's tunnel IPv4 address in the wg-quick text.
func Addr(t *testing.T, text string) netip.Addr { return parseWGQuick(t, text).Address[0].Addr() }

// SaveCA writes the CA's certificate and key (PEM) into dir, for a node
// run as a subprocess; LoadCA reads them back.
func (ca *testCA) SaveCA(t testing.TB, dir string) {
	k, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o600)
	os.WriteFile(filepath.Join(dir, "ca.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: k}), 0o600)
}

func LoadCA(t testing.TB, dir string) *TestCA {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		p, _ := pem.Decode(b)
		return p.Bytes
	}
	c, err := x509.ParseCertificate(read("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.ParseECPrivateKey(read("ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &testCA{cert: c, key: k, pool: pool}
}

// URL is the enrollment API's URL.
func (e *testEnv) URL() string { return e.url() }

// EnrollAt enrolls cert at the enrollment API url (trusting ca).
func EnrollAt(ca *TestCA, url string, cert tls.Certificate) (string, error) {
	hc := ca.httpClient(cert)
	defer hc.CloseIdleConnections() // many clients from one address: stay under the per-IP cap
	return Enroll(context.Background(), EnrollOptions{Server: url, HTTPClient: hc})
}

// AllOnDevice is closed once every live stored peer is on the device.
func (s *Server) AllOnDevice() <-chan struct{} { return s.allOnDevice }

// Handshaken reports whether the client completed a handshake.
func (c *wgClient) Handshaken() bool {
	text, _ := c.dev.IpcGet()
	return strings.Contains(text, "last_handshake_time_sec=") && !strings.Contains(text, "last_handshake_time_sec=0\n")
}

// StartNodeB starts a server on st for a benchmark without waiting for
// Ready; it returns the server, its port and a stop function.
func StartNodeB(b *testing.B, auth *FakeAuth, ca *TestCA, dir, keyFile, pool string, st Store) (*Server, int, func()) {
	port := freeUDPPort(b)
	cfg := Config{Enabled: true, ListenPort: port, Endpoint: fmt.Sprintf("127.0.0.1:%d", port), AddressPool: pool,
		EnrollListen: "127.0.0.1:0", StateDir: dir, UseNetstack: true, PrivateKeyFile: keyFile,
		RevalidateEvery: policy.Duration{Duration: time.Hour}}
	srv, err := New(cfg, auth, &tls.Config{Certificates: []tls.Certificate{ca.issue(b, "gh", true)}, ClientAuth: tls.RequireAnyClientCert}, nil)
	if err != nil {
		b.Fatal(err)
	}
	srv.SetStore(st)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	return srv, port, func() { cancel(); <-errc }
}

// WGClientFor is a wireguard-go client with key priv dialling the server
// at port, keepalive 1 s (it handshakes at once).
func WGClientFor(b *testing.B, priv, server Key, port int, addr string) *WGClient {
	q := &wgQuick{PrivateKey: priv, Address: []netip.Prefix{netip.MustParsePrefix(addr + "/32")}, PeerKey: server,
		Endpoint: fmt.Sprintf("127.0.0.1:%d", port), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.96.0.1/32")}, Keepalive: 1}
	return newWGClient(b, q)
}
