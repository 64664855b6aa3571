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
	NoFilter   bool // throughput baseline only
}

// lab is the three-namespace test network.
type lab struct {
	t             *testing.T
	nsS, nsC, nsB string
	ifS, ifC      string
	dir           string
	ca            *testCA
}

func newLab(t *testing.T, tag string) *lab {
	checkNetnsTools(t)
	pid := os.Getpid()
	l := &lab{
		t:   t,
		nsS: fmt.Sprintf("gh-%d%s-s", pid, tag), nsC: fmt.Sprintf("gh-%d%s-c", pid, tag), nsB: fmt.Sprintf("gh-%d%s-b", pid, tag),
		ifS: fmt.Sprintf("ghs%d", pid), ifC: fmt.Sprintf("ghc%d", pid),
		dir: t.TempDir(), ca: newTestCA(t),
	}
	for _, ns := range []string{l.nsS, l.nsC, l.nsB} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", l.nsC, "link", "add", "c0", "type", "veth", "peer", "name", "s0", "netns", l.nsS)
	run(t, "ip", "-n", l.nsS, "link", "add", "s1", "type", "veth", "peer", "name", "b0", "netns", l.nsB)
	for _, a := range [][3]string{{l.nsC, "c0", "192.0.2.2/24"}, {l.nsS, "s0", "192.0.2.1/24"}, {l.nsS, "s1", "198.51.100.1/24"}, {l.nsB, "b0", "198.51.100.2/24"}} {
		run(t, "ip", "-n", a[0], "addr", "add", a[2], "dev", a[1])
		run(t, "ip", "-n", a[0], "link", "set", a[1], "up")
	}
	run(t, "ip", "-n", l.nsS, "addr", "add", "fd00:b::1/64", "dev", "s1", "nodad")
	run(t, "ip", "-n", l.nsB, "addr", "add", "fd00:b::2/64", "dev", "b0", "nodad")
	run(t, "ip", "-n", l.nsB, "route", "add", "100.96.0.0/24", "via", "198.51.100.1")
	run(t, "ip", "-n", l.nsB, "-6", "route", "add", "fd7a:6761::/64", "via", "fd00:b::1")
	run(t, "ip", "netns", "exec", l.nsS, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	run(t, "ip", "netns", "exec", l.nsS, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	return l
}

func (l *lab) dialC(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := inNetnsErr(l.nsC, func() (any, error) { return (&net.Dialer{}).DialContext(ctx, network, addr) })
	if err != nil {
		return nil, err
	}
	return c.(net.Conn), nil
}

// reach dials addr from C and checks an echo.
func (l *lab) reach(addr string, timeout time.Duration) error {
	return reachVia(l.dialC, addr, timeout)
}

// reachVia dials addr with dial and checks a TCP echo within timeout.
func reachVia(dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
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

// helperProc is a test binary re-run as a helper process (one Test…Helper)
// inside a namespace, its stdout read line by line.
type helperProc struct {
	cmd   *exec.Cmd
	name  string        // the helper test, for failure messages
	wait  time.Duration // how long waitLine waits
	lines chan string
}

// startHelperProc runs this test binary's test helperTest inside namespace
// ns with cfg, JSON, in the environment variable env, stops it (stdin
// closed, then killed after 10s) when the test ends, and waits up to wait
// for its READY line.
func startHelperProc(t *testing.T, ns, helperTest, env string, cfg any, wait time.Duration) *helperProc {
	t.Helper()
	cfgJSON, _ := json.Marshal(cfg)
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^"+helperTest+"$", "-test.v")
	cmd.Env = append(os.Environ(), env+"="+string(cfgJSON))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	h := &helperProc{cmd: cmd, name: helperTest, wait: wait, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case h.lines <- sc.Text():
			default: // nobody waiting for output
			}
		}
		close(h.lines)
	}()
	h.waitLine(t, "READY")
	return h
}

// startServer runs gatehouse (TestNetnsServerHelper) in S.
func (l *lab) startServer(allow []string, noFilter bool) *helperProc {
	t := l.t
	hc := helperConfig{
		Config: Config{
			Enabled: true, Interface: l.ifS, ListenPort: 51820, Endpoint: "192.0.2.1:51820",
			AddressPool: "100.96.0.0/24", AddressPool6: "fd7a:6761::/64", EnrollListen: "192.0.2.1:8443",
		},
		StateDir:   filepath.Join(l.dir, "state"),
		Allow:      allow,
		AllowedCNs: []string{"alice"},
		NoFilter:   noFilter,
	}
	hc.CertPEM, hc.KeyPEM = serverCertFor(t, l.ca, "192.0.2.1")
	return startHelperProc(t, l.nsS, "TestNetnsServerHelper", helperEnv, hc, 20*time.Second)
}

func (h *helperProc) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(h.wait)
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				t.Fatalf("%s exited before %q", h.name, prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("%s: no %q", h.name, prefix)
		}
	}
}

// enroll runs Enroll from C for cn, writing the config file.
func (l *lab) enroll(cn string) *wgQuick {
	t := l.t
	cert := l.ca.issue(t, cn, false)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:     l.dialC,
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: l.ca.pool},
	}}
	confPath := filepath.Join(l.dir, "wg0.conf")
	text, err := Enroll(context.Background(), EnrollOptions{Server: "https://192.0.2.1:8443", HTTPClient: client, Output: confPath})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(confPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", fi, err)
	}
	return parseWGQuick(t, text)
}

// startClient runs a userspace WireGuard client (wgGo: a wireguard-go
// binary) in C, configured with wg setconf from q, plus ip addr and routes.
func (l *lab) startClient(q *wgQuick, wgGo string) {
	startWGClient(l.t, l.nsC, l.ifC, wgGo, l.dir, q)
}

// startWGClient runs a userspace WireGuard client (wgGo: a wireguard-go
// binary) as interface ifc in namespace ns, configured with wg setconf from
// q (the file written in dir), plus q's addresses and routes.
func startWGClient(t *testing.T, ns, ifc, wgGo, dir string, q *wgQuick) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, wgGo, "-f", ifc)
	cmd.Env = append(os.Environ(), "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	sock := "/var/run/wireguard/" + ifc + ".sock"
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 100 {
			t.Fatal("wireguard-go did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	setconf := filepath.Join(dir, "setconf-"+ifc+".conf")
	var allowed []string
	for _, p := range q.AllowedIPs {
		allowed = append(allowed, p.String())
	}
	os.WriteFile(setconf, []byte(fmt.Sprintf("[Interface]\nPrivateKey = %s\n\n[Peer]\nPublicKey = %s\nEndpoint = %s\nAllowedIPs = %s\nPersistentKeepalive = %d\n",
		q.PrivateKey, q.PeerKey, q.Endpoint, strings.Join(allowed, ", "), q.Keepalive)), 0o600)
	run(t, "ip", "netns", "exec", ns, "wg", "setconf", ifc, setconf)
	for _, a := range q.Address {
		run(t, "ip", "-n", ns, "addr", "add", a.String(), "dev", ifc)
	}
	run(t, "ip", "-n", ns, "link", "set", ifc, "up")
	for _, p := range q.AllowedIPs {
		run(t, "ip", "-n", ns, "route", "add", p.String(), "dev", ifc)
	}
}

func TestNetnsInterop(t *testing.T) {
	l := newLab(t, "")
	// Services on the protected network.
	for _, addr := range []string{"198.51.100.2:22", "198.51.100.2:80", "[fd00:b::2]:22", "[fd00:b::2]:80"} {
		ln := inNetns(t, l.nsB, func() (any, error) { return net.Listen("tcp", addr) }).(net.Listener)
		t.Cleanup(func() { ln.Close() })
		go echoServe(ln)
	}
	// Around the tunnel: the client has no path to the protected network.
	if err := l.reach("198.51.100.2:22", time.Second); err == nil {
		t.Fatal("protected service reachable without the tunnel")
	}
	h := l.startServer([]string{"198.51.100.2/32 6 22", "fd00:b::2/128 6 22"}, false)
	q := l.enroll("alice")
	l.startClient(q, "wireguard-go") // Debian's

	if err := l.reach("198.51.100.2:22", 5*time.Second); err != nil {
		t.Fatalf("allowed service through the tunnel: %v", err)
	}
	if err := l.reach("198.51.100.2:80", time.Second); err == nil {
		t.Fatal("forbidden service reachable through the tunnel")
	}
	if err := l.reach("[fd00:b::2]:22", 5*time.Second); err != nil {
		t.Fatalf("allowed IPv6 service through the tunnel: %v", err)
	}
	if err := l.reach("[fd00:b::2]:80", time.Second); err == nil {
		t.Fatal("forbidden IPv6 service reachable through the tunnel")
	}
	out := run(t, "wg", "show", l.ifS)
	if !strings.Contains(out, q.PrivateKey.Public().String()) || !strings.Contains(out, "100.96.0.2/32, fd7a:6761::2/128") {
		t.Errorf("wg show %s does not list the client and its addresses:\n%s", l.ifS, out)
	}
	if out := run(t, "ip", "-n", l.nsS, "addr", "show", "dev", l.ifS); !strings.Contains(out, "100.96.0.1/24") || !strings.Contains(out, "fd7a:6761::1/64") {
		t.Errorf("server TUN addresses:\n%s", out)
	}

	// Revocation: the helper flips alice to revoked and re-validates.
	h.cmd.Process.Signal(syscall.SIGUSR1)
	line := h.waitLine(t, "REVALIDATED")
	if err := l.reach("198.51.100.2:22", time.Second); err == nil {
		t.Fatal("revoked client still reaches the service")
	}
	if err := l.reach("[fd00:b::2]:22", time.Second); err == nil {
		t.Fatal("revoked client still reaches the IPv6 service")
	}
	t.Logf("revocation: %s", line)
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
	srv.noFilter = hc.NoFilter
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
	fmt.Fprintf(os.Stderr, "gatehouse helper: filter drops %v, flows %d\n", srv.Filter().Drops(), srv.Filter().Flows())
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

// TestNetnsThroughput measures iperf3 through the concentrator with the
// packet filter on and off, client → network and network → client. It runs
// only with GATEHOUSE_IPERF=1 (see testdata/iperf.sh); GATEHOUSE_WG_CLIENT
// names the client's wireguard-go binary (default: build one from this
// module's wireguard-go), GATEHOUSE_IPERF_SECONDS the length of each run.
func TestNetnsThroughput(t *testing.T) {
	if os.Getenv("GATEHOUSE_IPERF") != "1" {
		t.Skip("measurement: set GATEHOUSE_IPERF=1 (testdata/iperf.sh)")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 not installed")
	}
	wgGo := os.Getenv("GATEHOUSE_WG_CLIENT")
	if wgGo == "" {
		wgGo = filepath.Join(t.TempDir(), "wireguard-go")
		run(t, "go", "build", "-o", wgGo, "golang.zx2c4.com/wireguard")
	}
	secs := os.Getenv("GATEHOUSE_IPERF_SECONDS")
	if secs == "" {
		secs = "5"
	}
	rounds := 2
	if r := os.Getenv("GATEHOUSE_IPERF_ROUNDS"); r != "" {
		fmt.Sscan(r, &rounds)
	}
	type result struct{ up, down float64 }
	results := map[string]result{} // best of the rounds
	var modes []string
	for i := 0; i < rounds; i++ { // alternate, so load drifts hit both
		modes = append(modes, "filter-on", "filter-off")
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			l := newLab(t, "-"+mode[len(mode)-2:])
			srv := exec.Command("ip", "netns", "exec", l.nsB, "iperf3", "-s", "-B", "198.51.100.2")
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
			l.startServer([]string{"198.51.100.2/32 6 5201"}, mode == "filter-off")
			l.startClient(l.enroll("alice"), wgGo)
			measure := func(args ...string) float64 {
				var out []byte
				var err error
				for i := 0; i < 20; i++ { // until iperf3 -s listens
					out, err = exec.Command("ip", append([]string{"netns", "exec", l.nsC, "iperf3", "-c", "198.51.100.2", "-t", secs, "-J"}, args...)...).Output()
					if err == nil {
						break
					}
					time.Sleep(250 * time.Millisecond)
				}
				if err != nil {
					t.Fatalf("iperf3: %v\n%s", err, out)
				}
				var r struct {
					End struct {
						SumReceived struct {
							BitsPerSecond float64 `json:"bits_per_second"`
						} `json:"sum_received"`
					} `json:"end"`
				}
				if err := json.Unmarshal(out, &r); err != nil {
					t.Fatal(err)
				}
				return r.End.SumReceived.BitsPerSecond / 1e6
			}
			r := result{up: measure(), down: measure("-R")}
			t.Logf("iperf3 round: %s: client → network %.0f Mbit/s, network → client %.0f Mbit/s", mode, r.up, r.down)
			best := results[mode]
			results[mode] = result{up: max(best.up, r.up), down: max(best.down, r.down)}
		})
	}
	on, off := results["filter-on"], results["filter-off"]
	t.Logf("iperf3 %ss TCP, best of %d, Mbit/s  filter on   filter off", secs, rounds)
	t.Logf("iperf3 client → network     %10.0f   %10.0f", on.up, off.up)
	t.Logf("iperf3 network → client     %10.0f   %10.0f", on.down, off.down)
}
