//go:build linux

package vpn_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/policytest"
	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/store/postgres"
	"github.com/gatehouse/gatehouse/vpn"
	"github.com/gatehouse/gatehouse/vpn/pgstore"
)

// Two gatehouse nodes of one site in namespaces, each a real process with
// a kernel TUN, sharing one PostgreSQL (over its Unix socket) and one
// WireGuard key, each masquerading the pool towards the service network:
//
//	            ┌ s0 192.0.2.1   S1 (node A) x 10.10.1.1 ─ 10.10.1.2 ┐
//	C (client) ─┤                                                    X (10.10.0.2: echo :22)
//	            └ s0 192.0.3.1   S2 (node B) x 10.10.2.1 ─ 10.10.2.2 ┘
//
// X has no route to the tunnel pool: replies find their way back only
// through the masquerade of the node the client is connected to.

const nodeHelperEnv = "GATEHOUSE_NETNS_NODE"

type nodeHelperConfig struct {
	Config          vpn.Config
	StateDir, DSN   string
	Name            string
	CertPEM, KeyPEM string
}

func TestNetnsTwoNodesMasquerade(t *testing.T) {
	vpn.CheckNetnsTools(t)
	policytest.RequireTool(t, "nft") // the masquerade
	pid := os.Getpid()
	ns := map[string]string{}
	for _, n := range []string{"c", "s1", "s2", "x"} {
		ns[n] = fmt.Sprintf("gh-%dm-%s", pid, n)
		vpn.Run(t, "ip", "netns", "add", ns[n])
		name := ns[n]
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		vpn.Run(t, "ip", "-n", ns[n], "link", "set", "lo", "up")
	}
	link := func(a, ifa, addrA, b, ifb, addrB string) {
		vpn.Run(t, "ip", "-n", ns[a], "link", "add", ifa, "type", "veth", "peer", "name", ifb, "netns", ns[b])
		for _, x := range [][3]string{{a, ifa, addrA}, {b, ifb, addrB}} {
			vpn.Run(t, "ip", "-n", ns[x[0]], "addr", "add", x[2], "dev", x[1])
			vpn.Run(t, "ip", "-n", ns[x[0]], "link", "set", x[1], "up")
		}
	}
	link("c", "c1", "192.0.2.2/24", "s1", "s0", "192.0.2.1/24")
	link("c", "c2", "192.0.3.2/24", "s2", "s0", "192.0.3.1/24")
	link("s1", "x", "10.10.1.1/24", "x", "x1", "10.10.1.2/24")
	link("s2", "x", "10.10.2.1/24", "x", "x2", "10.10.2.2/24")
	vpn.Run(t, "ip", "-n", ns["x"], "addr", "add", "10.10.0.2/32", "dev", "lo")
	for i, s := range []string{"s1", "s2"} {
		vpn.Run(t, "ip", "-n", ns[s], "route", "add", "10.10.0.2/32", "via", fmt.Sprintf("10.10.%d.2", i+1))
		vpn.Run(t, "ip", "netns", "exec", ns[s], "sysctl", "-qw", "net.ipv4.ip_forward=1")
		// The tested return-traffic variant: per-node masquerade.
		rules := filepath.Join(t.TempDir(), "nat.nft")
		os.WriteFile(rules, []byte("table ip gatehouse_nat {\n chain post {\n  type nat hook postrouting priority 100;\n  ip saddr 100.96.0.0/24 oifname \"x\" masquerade\n }\n}\n"), 0o600)
		vpn.Run(t, "ip", "netns", "exec", ns[s], "nft", "-f", rules)
	}
	vpn.EchoInNetns(t, ns["x"], "10.10.0.2:22")
	if err := exec.Command("ip", "-n", ns["x"], "route", "get", "100.96.0.2").Run(); err == nil {
		t.Fatal("the service network has a route to the tunnel pool: the masquerade would not be tested")
	}

	pg := pgtest.Start(t)
	pg.CreateDatabase("gh_netns")
	dsn := pg.SocketDSN("gh_netns")
	ca := vpn.NewTestCA(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "site-wg.key")
	vpn.NewKeyFile(t, keyFile) // both nodes share it: made before they start
	start := func(name, nsName, ip, iface string) *vpn.HelperProc {
		hc := nodeHelperConfig{
			Config: vpn.Config{Enabled: true, Interface: iface, ListenPort: 51820, Endpoint: ip + ":51820",
				AddressPool: "100.96.0.0/24", EnrollListen: ip + ":8443", PrivateKeyFile: keyFile,
				RevalidateEvery: policy.Duration{Duration: time.Hour}},
			StateDir: filepath.Join(dir, name), DSN: dsn, Name: name,
		}
		hc.CertPEM, hc.KeyPEM = ca.ServerPEM(t, ip)
		return vpn.StartHelperProc(t, nsName, "TestNetnsNodeHelper", nodeHelperEnv, hc, 30*time.Second)
	}
	a := start("a", ns["s1"], "192.0.2.1", fmt.Sprintf("gha%d", pid))
	b := start("b", ns["s2"], "192.0.3.1", fmt.Sprintf("ghb%d", pid))

	// Enroll through A…
	cert := ca.Client(t, "alice")
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: vpn.DialInNetns(ns["c"]),
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.Pool()}}}
	text, err := vpn.Enroll(context.Background(), vpn.EnrollOptions{Server: "https://192.0.2.1:8443", HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	// …and connect through B.
	pub := vpn.ClientInNetns(t, ns["c"], fmt.Sprintf("ghc%dm", pid), dir, text, "192.0.3.1:51820", 1)
	reach := func(timeout time.Duration) error { return vpn.ReachFrom(ns["c"], "10.10.0.2:22", timeout) }
	if err := reach(10 * time.Second); err != nil {
		t.Fatalf("client enrolled on A cannot reach the service through B: %v", err)
	}
	if out := vpn.Run(t, "ip", "netns", "exec", ns["s2"], "wg", "show", fmt.Sprintf("ghb%d", pid), "latest-handshakes"); !strings.Contains(out, pub.String()) {
		t.Errorf("B has no handshake with the client:\n%s", out)
	}

	// Revoke on A (A holds the re-validation lease: it started first).
	a.Signal(syscall.SIGUSR1)
	a.WaitLine(t, "REVALIDATED")
	revoked := time.Now()
	waitFor(t, 2*time.Second, "B cuts the client revoked on A", func() bool { return reach(300*time.Millisecond) != nil })
	t.Logf("revocation on A: the client's traffic through B stopped after %v", time.Since(revoked).Round(time.Millisecond))
	_ = b
}

// TestNetnsNodeHelper is one node of TestNetnsTwoNodesMasquerade.
func TestNetnsNodeHelper(t *testing.T) {
	env := os.Getenv(nodeHelperEnv)
	if env == "" {
		t.Skip("helper process of TestNetnsTwoNodesMasquerade")
	}
	var hc nodeHelperConfig
	if err := json.Unmarshal([]byte(env), &hc); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair([]byte(hc.CertPEM), []byte(hc.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	auth := &vpn.FakeAuth{}
	auth.Allow("alice")
	cfg := hc.Config
	cfg.StateDir = hc.StateDir
	srv, err := vpn.New(cfg, auth, &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert}, nil)
	if err != nil {
		t.Fatal(err)
	}
	db, err := postgres.Open(postgres.Config{DSN: hc.DSN}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	st := pgstore.New(db, pgstore.Config{Site: "hq", Node: hc.Name, Cache: filepath.Join(hc.StateDir, "cache")}, nil)
	srv.SetStore(st)
	srv.SetLeader(st.Revalidates)
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	done := make(chan struct{})
	go func() { defer close(done); <-srv.Ready(); st.Run(ctx, srv) }()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-usr1:
				auth.Revoke("alice")
				rep := srv.Revalidate(ctx)
				fmt.Printf("REVALIDATED %s\n", rep.String())
			}
		}
	}()
	go func() {
		select {
		case <-srv.Ready():
		case <-ctx.Done():
			return
		}
		for st.Available() != nil && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		if hc.Name == "a" {
			for !st.Leader() && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
		}
		fmt.Printf("READY %s\n", srv.EnrollAddr())
	}()
	if err := srv.Run(ctx); err != nil {
		t.Fatal(err)
	}
	<-done
}
