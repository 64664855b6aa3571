package vpn

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// Addresses served inside the server's netstack, standing for networks
// behind the concentrator.
var (
	svcOpen      = netip.MustParseAddr("10.10.0.1") // engineering: any
	svcSSH       = netip.MustParseAddr("10.20.0.5") // engineering: tcp/22,443
	svcDNS       = netip.MustParseAddr("10.0.0.53") // engineering: udp/53
	svcForbidden = netip.MustParseAddr("10.30.0.1") // nobody
)

var engineeringAccess = &policy.VPNAccess{Allow: []policy.Destination{
	dst("10.10.0.0/16", policy.ProtoAny),
	dst("10.20.0.5", policy.ProtoTCP, 22, 443),
	dst("10.0.0.53", policy.ProtoUDP, 53),
}}

var salesAccess = &policy.VPNAccess{Allow: []policy.Destination{dst("10.30.0.0/16", policy.ProtoTCP, 22)}}

type testEnv struct {
	t    *testing.T
	ca   *testCA
	auth *fakeAuth
	srv  *Server
	cfg  Config
	stop func() error
}

func startServer(t *testing.T, auth *fakeAuth, ca *testCA, dir string, mutate func(*Config)) *testEnv {
	t.Helper()
	return startServerWith(t, auth, ca, dir, mutate, nil)
}

// startServerWith is startServer with before called on the Server before Run.
func startServerWith(t *testing.T, auth *fakeAuth, ca *testCA, dir string, mutate func(*Config), before func(*Server)) *testEnv {
	t.Helper()
	port := freeUDPPort(t)
	cfg := Config{
		Enabled:         true,
		ListenPort:      port,
		Endpoint:        fmt.Sprintf("127.0.0.1:%d", port),
		AddressPool:     "100.96.0.0/16",
		AddressPool6:    "fd7a:6761::/64",
		EnrollListen:    "127.0.0.1:0",
		DNS:             []string{"10.0.0.53"},
		RevalidateEvery: policy.Duration{Duration: time.Hour},
		StateDir:        dir,
		UseNetstack:     true,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srvCert := ca.issue(t, "gatehouse.test", true)
	tlsConf := &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequireAnyClientCert, MinVersion: tls.VersionTLS12}
	srv, err := New(cfg, auth, tlsConf, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv.netstackExtra = []netip.Addr{svcOpen, svcSSH, svcDNS, svcForbidden}
	if before != nil {
		before(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("server not ready")
	}
	env := &testEnv{t: t, ca: ca, auth: auth, srv: srv, cfg: cfg}
	stopped := false
	env.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("Run did not return")
		}
	}
	t.Cleanup(func() {
		if err := env.stop(); err != nil {
			t.Error(err)
		}
	})
	env.serve()
	return env
}

// serve starts echo services inside the server's netstack: TCP on every
// service address at ports 22 and 80, UDP at 53.
func (e *testEnv) serve() {
	tnet := e.srv.Net()
	for _, a := range []netip.Addr{svcOpen, svcSSH, svcForbidden} {
		for _, port := range []int{22, 80} {
			ln, err := tnet.ListenTCP(&net.TCPAddr{IP: a.AsSlice(), Port: port})
			if err != nil {
				e.t.Fatal(err)
			}
			e.t.Cleanup(func() { ln.Close() })
			go func() {
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
			}()
		}
	}
	pc, err := tnet.ListenUDP(&net.UDPAddr{IP: svcDNS.AsSlice(), Port: 53})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
}

func (e *testEnv) url() string { return "https://" + e.srv.EnrollAddr().String() }

// enroll enrolls a fresh key for cert and returns the wg-quick text.
func (e *testEnv) enroll(cert tls.Certificate) (string, error) {
	return Enroll(context.Background(), EnrollOptions{Server: e.url(), HTTPClient: e.ca.httpClient(cert)})
}

// tcpEcho dials addr:port through c and checks an echo; the error says why not.
func (c *wgClient) tcpEcho(addr netip.Addr, port int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := c.net.DialContext(ctx, "tcp", netip.AddrPortFrom(addr, uint16(port)).String())
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	msg := []byte("hello gatehouse")
	if _, err := conn.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		return err
	}
	if string(got) != string(msg) {
		return fmt.Errorf("echo %q", got)
	}
	return nil
}

func (c *wgClient) udpEcho(addr netip.Addr, port int, timeout time.Duration) error {
	conn, err := c.net.DialUDPAddrPort(netip.AddrPort{}, netip.AddrPortFrom(addr, uint16(port)))
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("q")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "q" {
		return fmt.Errorf("udp echo %q", buf[:n])
	}
	return nil
}

const (
	reachTimeout   = 5 * time.Second
	blockedTimeout = 700 * time.Millisecond
)

func TestEndToEnd(t *testing.T) {
	checkGoroutines(t)
	ca := newTestCA(t)
	auth := &fakeAuth{}
	auth.set("alice", allow("engineering", engineeringAccess))
	env := startServer(t, auth, ca, t.TempDir(), nil)
	alice := ca.issue(t, "alice", false)

	text, err := env.enroll(alice)
	if err != nil {
		t.Fatal(err)
	}
	q := parseWGQuick(t, text)
	if q.PrivateKey.IsZero() || q.PeerKey != env.srv.PublicKey() || q.Endpoint != env.cfg.Endpoint || q.Keepalive != 25 {
		t.Fatalf("config:\n%s", text)
	}
	if got := fmt.Sprint(q.Address); got != "[100.96.0.2/32 fd7a:6761::2/128]" {
		t.Errorf("Address = %s", got)
	}
	if got := fmt.Sprint(q.AllowedIPs); got != "[10.10.0.0/16 10.20.0.5/32 10.0.0.53/32]" {
		t.Errorf("AllowedIPs = %s (split tunnel: the rule's destinations)", got)
	}
	// The client routes everything into the tunnel, as a hostile client
	// ignoring the split tunnel would: the server's filter, not the
	// client's routes, must enforce the policy.
	q.AllowedIPs = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	client := newWGClient(t, q)

	for _, tc := range []struct {
		name string
		addr netip.Addr
		port int
		ok   bool
	}{
		{"open network", svcOpen, 80, true},
		{"allowed port", svcSSH, 22, true},
		{"forbidden port", svcSSH, 80, false},
		{"forbidden host", svcForbidden, 22, false},
		{"server's own address", netip.MustParseAddr("100.96.0.1"), 22, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			to := reachTimeout
			if !tc.ok {
				to = blockedTimeout
			}
			err := client.tcpEcho(tc.addr, tc.port, to)
			if tc.ok && err != nil {
				t.Fatalf("want reachable: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("want blocked, got through")
			}
		})
	}
	if err := client.udpEcho(svcDNS, 53, reachTimeout); err != nil {
		t.Fatalf("udp/53: %v", err)
	}
	// Network → client: only replies. A connection the network opens to
	// the client is dropped (no_flow), though the client listens.
	ln, err := client.net.ListenTCP(&net.TCPAddr{Port: 9999})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go echoServe(ln)
	ctx, cancel := context.WithTimeout(context.Background(), blockedTimeout)
	if c, err := env.srv.Net().DialContext(ctx, "tcp", "100.96.0.2:9999"); err == nil {
		c.Close()
		t.Error("network opened a connection to the client")
	}
	cancel()
	drops := env.srv.Filter().Drops()
	if drops["no_flow"] == 0 {
		t.Errorf("no no_flow drops counted: %v", drops)
	}
	if drops["not_allowed"] < 3 {
		t.Errorf("no not_allowed drops counted: %v", drops)
	}
	t.Logf("filter drops: %v", drops)

	// GET /v1/me.
	resp, err := ca.httpClient(alice).Get(env.url() + "/v1/me")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/v1/me: %d %s", resp.StatusCode, body)
	}
	t.Logf("/v1/me: %s", body)

	// Policy change: alice moves to sales: the open network is cut, the
	// sales host opens. AllowedIPs stay; only the filter changes.
	auth.set("alice", allow("sales", salesAccess))
	env.srv.Revalidate(context.Background())
	if err := client.tcpEcho(svcOpen, 80, blockedTimeout); err == nil {
		t.Error("after policy change: engineering network still reachable")
	}
	if err := client.tcpEcho(svcForbidden, 22, reachTimeout); err != nil {
		t.Errorf("after policy change: sales host: %v", err)
	}

	// Revocation: the peer is suspended: off the device and the filter,
	// its record and lease kept (only its holder, an admin or expiry
	// deletes).
	auth.set("alice", policy.Decision{Code: policy.CodeRevoked, Reason: "revoked by employee-int.crl"})
	start := time.Now()
	env.srv.Revalidate(context.Background())
	cut := time.Since(start)
	if err := client.tcpEcho(svcForbidden, 22, blockedTimeout); err == nil {
		t.Error("after revocation: still reachable")
	}
	t.Logf("revocation-to-cut (Revalidate with 1 peer): %v", cut)
	if n := env.srv.peerCount(); n != 1 {
		t.Errorf("peers after revocation: %d", n)
	}
	if st := env.srv.Stats(); st.Leases != 1 || st.Peers != 1 || st.Suspended != 1 || st.PoolSize != 65533 {
		t.Errorf("after revocation: %+v", st)
	}
	resp, err = ca.httpClient(alice).Get(env.url() + "/v1/me")
	if err != nil {
		t.Fatal(err)
	}
	var me MeResponse
	json.NewDecoder(resp.Body).Decode(&me)
	resp.Body.Close()
	if resp.StatusCode != 200 || me.Suspended == nil || me.Suspended.Code != "revoked" {
		t.Errorf("/v1/me after revocation: %d %+v", resp.StatusCode, me)
	}
	if err := env.stop(); err != nil {
		t.Fatal(err)
	}
}
