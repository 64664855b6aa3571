//go:build linux

package vpn

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gatehouse/gatehouse/policy"
)

// The interop test builds three network namespaces:
//
//	C (client: Debian wireguard-go + wg)  c0 192.0.2.2 ── s0 192.0.2.1  S (gatehouse, real TUN)
//	S  s1 198.51.100.1 ── b0 198.51.100.2  B (the protected network: echo services on :22 and :80)
//
// gatehouse runs in S as a helper process (this test binary re-executed with
// `ip netns exec`), so every socket and the TUN live in S. The policy allows
// 198.51.100.2 tcp/22 only.

const helperEnv = "GATEHOUSE_NETNS_HELPER"

type helperConfig struct {
	Config     Config
	StateDir   string
	CertPEM    string
	KeyPEM     string
	Allow      []string // "prefix proto port"
	AllowedCNs []string
}

func TestNetnsInterop(t *testing.T) {
	checkNetnsTools(t)
	pid := os.Getpid()
	nsS, nsC, nsB := fmt.Sprintf("gh-%d-s", pid), fmt.Sprintf("gh-%d-c", pid), fmt.Sprintf("gh-%d-b", pid)
	ifS, ifC := fmt.Sprintf("ghs%d", pid), fmt.Sprintf("ghc%d", pid)
	for _, ns := range []string{nsS, nsC, nsB} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", nsC, "link", "add", "c0", "type", "veth", "peer", "name", "s0", "netns", nsS)
	run(t, "ip", "-n", nsS, "link", "add", "s1", "type", "veth", "peer", "name", "b0", "netns", nsB)
	for _, a := range [][3]string{{nsC, "c0", "192.0.2.2/24"}, {nsS, "s0", "192.0.2.1/24"}, {nsS, "s1", "198.51.100.1/24"}, {nsB, "b0", "198.51.100.2/24"}} {
		run(t, "ip", "-n", a[0], "addr", "add", a[2], "dev", a[1])
		run(t, "ip", "-n", a[0], "link", "set", a[1], "up")
	}
	run(t, "ip", "-n", nsB, "route", "add", "100.96.0.0/24", "via", "198.51.100.1")
	run(t, "ip", "netns", "exec", nsS, "sysctl", "-qw", "net.ipv4.ip_forward=1")

	// Services on the protected network.
	for _, port := range []int{22, 80} {
		ln := inNetns(t, nsB, func() (any, error) { return net.Listen("tcp", fmt.Sprintf("198.51.100.2:%d", port)) }).(net.Listener)
		t.Cleanup(func() { ln.Close() })
		go echoServe(ln)
	}
	dialC := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := inNetnsErr(nsC, func() (any, error) { return (&net.Dialer{}).DialContext(ctx, network, addr) })
		if err != nil {
			return nil, err
		}
		return c.(net.Conn), nil
	}
	reach := func(addr string, timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := dialC(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err = io.ReadFull(c, buf)
		return err
	}
	// Around the tunnel: the client has no path to the protected network.
	if err := reach("198.51.100.2:22", time.Second); err == nil {
		t.Fatal("protected service reachable without the tunnel")
	}

	// gatehouse in S.
	ca := newTestCA(t)
	dir := t.TempDir()
	srvCert := ca.issue(t, "gatehouse.test", false)
	hc := helperConfig{
		Config: Config{
			Enabled: true, Interface: ifS, ListenPort: 51820, Endpoint: "192.0.2.1:51820",
			AddressPool: "100.96.0.0/24", EnrollListen: "192.0.2.1:8443",
		},
		StateDir:   filepath.Join(dir, "state"),
		CertPEM:    string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvCert.Certificate[0]})),
		KeyPEM:     keyPEM(t, srvCert),
		Allow:      []string{"198.51.100.2/32 6 22"},
		AllowedCNs: []string{"alice"},
	}
	// The server certificate needs 192.0.2.1: issue one for it.
	hc.CertPEM, hc.KeyPEM = serverCertFor(t, ca, "192.0.2.1")
	cfgJSON, _ := json.Marshal(hc)
	helper := exec.Command("ip", "netns", "exec", nsS, os.Args[0], "-test.run=^TestNetnsServerHelper$", "-test.v")
	helper.Env = append(os.Environ(), helperEnv+"="+string(cfgJSON))
	helper.Stderr = os.Stderr
	stdin, _ := helper.StdinPipe()
	stdout, _ := helper.StdoutPipe()
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { helper.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			helper.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody waiting for output
			}
		}
		close(lines)
	}()
	waitLine := func(prefix string) string {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("helper exited before %q", prefix)
				}
				if strings.HasPrefix(l, prefix) {
					return l
				}
			case <-timeout:
				t.Fatalf("helper: no %q", prefix)
			}
		}
	}
	waitLine("READY")

	// Enroll from C, over mutual TLS, writing the config file.
	alice := ca.issue(t, "alice", false)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:     dialC,
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{alice}, RootCAs: ca.pool},
	}}
	confPath := filepath.Join(dir, "wg0.conf")
	text, err := Enroll(context.Background(), EnrollOptions{Server: "https://192.0.2.1:8443", HTTPClient: client, Output: confPath})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(confPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", fi, err)
	}
	q := parseWGQuick(t, text)

	// The real client: Debian's wireguard-go and wg, configured from the
	// enrolled config (wg setconf takes the [Interface]/[Peer] subset).
	wgGo := exec.Command("ip", "netns", "exec", nsC, "wireguard-go", "-f", ifC)
	wgGo.Env = append(os.Environ(), "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error")
	if err := wgGo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wgGo.Process.Signal(syscall.SIGTERM); wgGo.Wait() })
	sock := "/var/run/wireguard/" + ifC + ".sock"
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 100 {
			t.Fatal("wireguard-go did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	setconf := filepath.Join(dir, "setconf.conf")
	var allowed []string
	for _, p := range q.AllowedIPs {
		allowed = append(allowed, p.String())
	}
	os.WriteFile(setconf, []byte(fmt.Sprintf("[Interface]\nPrivateKey = %s\n\n[Peer]\nPublicKey = %s\nEndpoint = %s\nAllowedIPs = %s\nPersistentKeepalive = %d\n",
		q.PrivateKey, q.PeerKey, q.Endpoint, strings.Join(allowed, ", "), q.Keepalive)), 0o600)
	run(t, "ip", "netns", "exec", nsC, "wg", "setconf", ifC, setconf)
	for _, a := range q.Address {
		run(t, "ip", "-n", nsC, "addr", "add", a.String(), "dev", ifC)
	}
	run(t, "ip", "-n", nsC, "link", "set", ifC, "up")
	for _, p := range q.AllowedIPs {
		run(t, "ip", "-n", nsC, "route", "add", p.String(), "dev", ifC)
	}

	if err := reach("198.51.100.2:22", 5*time.Second); err != nil {
		t.Fatalf("allowed service through the tunnel: %v", err)
	}
	if err := reach("198.51.100.2:80", time.Second); err == nil {
		t.Fatal("forbidden service reachable through the tunnel")
	}
	out := run(t, "wg", "show", ifS)
	if !strings.Contains(out, q.PrivateKey.Public().String()) {
		t.Errorf("wg show %s does not list the client:\n%s", ifS, out)
	}

	// Revocation: the helper flips alice to revoked and re-validates.
	helper.Process.Signal(syscall.SIGUSR1)
	l := waitLine("REVALIDATED")
	if err := reach("198.51.100.2:22", time.Second); err == nil {
		t.Fatal("revoked client still reaches the service")
	}
	t.Logf("revocation: %s", l)
}

// TestNetnsServerHelper is the gatehouse server process of TestNetnsInterop.
func TestNetnsServerHelper(t *testing.T) {
	env := os.Getenv(helperEnv)
	if env == "" {
		t.Skip("helper process of TestNetnsInterop")
	}
	var hc helperConfig
	if err := json.Unmarshal([]byte(env), &hc); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair([]byte(hc.CertPEM), []byte(hc.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	acc := &policy.VPNAccess{}
	for _, a := range hc.Allow {
		var p string
		var proto, port int
		fmt.Sscan(a, &p, &proto, &port)
		acc.Allow = append(acc.Allow, dst(p, policy.Proto(proto), uint16(port)))
	}
	auth := &fakeAuth{}
	for _, cn := range hc.AllowedCNs {
		auth.set(cn, allow("netns", acc))
	}
	cfg := hc.Config
	cfg.StateDir = hc.StateDir
	srv, err := New(cfg, auth, &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-usr1:
				for _, cn := range hc.AllowedCNs {
					auth.set(cn, policy.Decision{Code: policy.CodeRevoked, Reason: "revoked"})
				}
				start := time.Now()
				srv.Revalidate(ctx)
				fmt.Printf("REVALIDATED in %v, peers %d, drops %v\n", time.Since(start), srv.peerCount(), srv.Filter().Drops())
			}
		}
	}()
	go func() {
		select {
		case <-srv.Ready():
			fmt.Printf("READY %s %s\n", srv.EnrollAddr(), srv.PublicKey())
		case <-ctx.Done():
		}
	}()
	if err := srv.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

func checkNetnsTools(t *testing.T) {
	t.Helper()
	requireInterop(t, os.Geteuid() == 0, "needs root for network namespaces")
	for _, tool := range []string{"ip", "wg", "wireguard-go", "sysctl"} {
		_, err := exec.LookPath(tool)
		requireInterop(t, err == nil, tool+" not installed")
	}
	_, err := os.Stat("/dev/net/tun")
	requireInterop(t, err == nil, "no /dev/net/tun")
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNetnsErr runs fn on an OS thread inside network namespace ns; sockets it
// creates belong to ns for their whole life.
func inNetnsErr(ns string, fn func() (any, error)) (any, error) {
	type result struct {
		v   any
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, err}
			return
		}
		v, err := fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread() // else the thread dies with this goroutine
		}
		ch <- result{v, err}
	}()
	r := <-ch
	return r.v, r.err
}

func inNetns(t *testing.T, ns string, fn func() (any, error)) any {
	t.Helper()
	v, err := inNetnsErr(ns, fn)
	if err != nil {
		t.Fatal(err)
	}
	return v
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

func keyPEM(t *testing.T, c tls.Certificate) string {
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// serverCertFor issues a server certificate for ip.
func serverCertFor(t *testing.T, ca *testCA, ip string) (certPEM, keyPEMs string) {
	c := ca.issueIP(t, "gatehouse.test", netip.MustParseAddr(ip))
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})), keyPEM(t, c)
}
