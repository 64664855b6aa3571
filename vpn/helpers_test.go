package vpn

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/policytest"
)

// testCA is a tiny local CA for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

var serial int64 = 1

func newTestCA(t testing.TB) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "gatehouse test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	serial++
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &testCA{cert: c, key: key, pool: pool}
}

// issue returns a leaf for cn; server certificates get 127.0.0.1.
func (ca *testCA) issue(t testing.TB, cn string, server bool) tls.Certificate {
	var ip netip.Addr
	if server {
		ip = netip.MustParseAddr("127.0.0.1")
	}
	return ca.issueIP(t, cn, ip)
}

// issueIP returns a server certificate for ip, or a client one if ip is zero.
func (ca *testCA) issueIP(t testing.TB, cn string, ip netip.Addr) tls.Certificate {
	server := ip.IsValid()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(12 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	serial++
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{ip.AsSlice()}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// fakeAuth maps a leaf's CN to a decision.
type fakeAuth struct {
	mu    sync.Mutex // guards byCN
	byCN  map[string]policy.Decision
	calls int
}

func (f *fakeAuth) set(cn string, d policy.Decision) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byCN == nil {
		f.byCN = make(map[string]policy.Decision)
	}
	f.byCN[cn] = d
}

func (f *fakeAuth) Authorize(_ context.Context, chain []*x509.Certificate) policy.Decision {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(chain) == 0 {
		return policy.Decision{Code: policy.CodeNoCertificate}
	}
	d, ok := f.byCN[chain[0].Subject.CommonName]
	if !ok {
		return policy.Decision{Code: policy.CodeNotInDirectory, Reason: "no entry"}
	}
	return d
}

func allow(rule string, acc *policy.VPNAccess) policy.Decision {
	return policy.Decision{Allowed: true, Code: policy.CodeAllowed, Rule: rule, VPN: acc}
}

func dst(s string, proto policy.Proto, ports ...uint16) policy.Destination {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		p = netip.PrefixFrom(netip.MustParseAddr(s), 32)
	}
	d := policy.Destination{Prefix: p, Proto: proto}
	for _, port := range ports {
		d.Ports = append(d.Ports, policy.PortRange{First: port, Last: port})
	}
	return d
}

func freeUDPPort(t testing.TB) int {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() && os.Getenv("GATEHOUSE_VPN_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// httpClient returns an HTTPS client presenting cert and trusting ca.
func (ca *testCA) httpClient(cert tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: ca.pool,
	}}}
}

// wgQuick is the part of a wg-quick file the tests use.
type wgQuick struct {
	PrivateKey Key
	Address    []netip.Prefix
	DNS        []string
	PeerKey    Key
	Endpoint   string
	AllowedIPs []netip.Prefix
	Keepalive  int
}

func parseWGQuick(t testing.TB, text string) *wgQuick {
	t.Helper()
	var q wgQuick
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("bad config line %q", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		list := func() []netip.Prefix {
			var out []netip.Prefix
			for _, s := range strings.Split(v, ",") {
				out = append(out, netip.MustParsePrefix(strings.TrimSpace(s)))
			}
			return out
		}
		var err error
		switch section + k {
		case "[Interface]PrivateKey":
			q.PrivateKey, err = ParseKey(v)
		case "[Interface]Address":
			q.Address = list()
		case "[Interface]DNS":
			q.DNS = strings.Split(v, ", ")
		case "[Peer]PublicKey":
			q.PeerKey, err = ParseKey(v)
		case "[Peer]Endpoint":
			q.Endpoint = v
		case "[Peer]AllowedIPs":
			q.AllowedIPs = list()
		case "[Peer]PersistentKeepalive":
			fmt.Sscan(v, &q.Keepalive)
		default:
			t.Fatalf("unexpected key %s%s", section, k)
		}
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	return &q
}

// wgClient is a plain wireguard-go + netstack client configured from a
// wg-quick file.
type wgClient struct {
	dev *device.Device
	net *netstack.Net
}

func newWGClient(t testing.TB, q *wgQuick) *wgClient {
	t.Helper()
	var local []netip.Addr
	for _, p := range q.Address {
		local = append(local, p.Addr())
	}
	tdev, tnet, err := netstack.CreateNetTUN(local, nil, 1420)
	if err != nil {
		t.Fatal(err)
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	var w uapiWriter
	w.privateKey(q.PrivateKey)
	w.peer(q.PeerKey)
	w.endpoint(q.Endpoint)
	for _, p := range q.AllowedIPs {
		w.allowedIP(p)
	}
	w.keepalive(q.Keepalive)
	if err := dev.IpcSet(w.String()); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Close)
	return &wgClient{dev: dev, net: tnet}
}

// checkGoroutines fails t if goroutines started during the test are still
// running shortly after it.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		var n int
		for i := 0; i < 100; i++ {
			n = runtime.NumGoroutine()
			if n <= before {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("goroutines: %d before, %d after:\n%s", before, n, buf)
	})
}

func echoServe(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.Copy(c, c)
		}()
	}
}

// requireInterop skips a test that needs an external tool, or fails it when
// GATEHOUSE_REQUIRE_INTEROP=1.
func requireInterop(t *testing.T, ok bool, why string) {
	t.Helper()
	policytest.RequireInterop(t, ok, why)
}

// newKeyFile writes a new server private key to path (the server's key
// file, as `gatehouse vpn genkey` does) and returns it. A server whose
// registry already holds peers, or whose PrivateKeyFile is set, does not
// generate its key at start: a test starting one creates the file first.
func newKeyFile(t testing.TB, path string) Key {
	t.Helper()
	k, err := WriteKeyFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
