package radius

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy/policytest"
	"github.com/gatehouse/gatehouse/radius/radbench"
)

// startFreeRADIUS runs a FreeRADIUS server configured for EAP-TLS with the
// shared test PKI on a free 127.0.0.1 port and returns its address. It also
// trusts the client CAs in extraCAs (PEM).
func startFreeRADIUS(t *testing.T, tlsMax string, debug bool, extraCAs ...[]byte) (addr string, pid int) {
	return startFreeRADIUSWith(t, frOptions{tlsMax: tlsMax, debug: debug, extraCAs: extraCAs})
}

// frOptions configures startFreeRADIUSWith.
type frOptions struct {
	tlsMax   string
	debug    bool
	extraCAs [][]byte // more client CAs trusted (PEM)
	// checkCRL makes FreeRADIUS require a CRL for the client certificate
	// (check_crl, the test PKI's CRLs loaded with the CAs from ca_file), as
	// gatehouse's shipped trust.revocation = "require" does. (gatehouse
	// also checks the intermediates; FreeRADIUS 3.2.1's check_all_crl
	// fails "unable to get certificate CRL" on the same files, which
	// openssl verify -crl_check_all accepts; and with a hashed ca_path
	// instead of ca_file it rejects most TLS 1.2 logins unless run with
	// -X, single-threaded.)
	checkCRL bool
}

func startFreeRADIUSWith(t *testing.T, o frOptions) (addr string, pid int) {
	tlsMax, debug, extraCAs := o.tlsMax, o.debug, o.extraCAs
	bin := requireTool(t, "freeradius")
	const sys = "/etc/freeradius/3.0"
	_, err := os.Stat(sys)
	policytest.RequireInterop(t, err == nil, "no "+sys)
	dir := filepath.Join(t.TempDir(), "raddb")
	if out, err := exec.Command("cp", "-a", sys, dir).CombinedOutput(); err != nil {
		t.Fatalf("copy config: %v %s", err, out)
	}
	abs, _ := filepath.Abs(pkiDir)
	cat := func(dst string, srcs ...string) {
		var b []byte
		for _, s := range srcs {
			c, err := os.ReadFile(filepath.Join(abs, s))
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, c...)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(dst, ".key") {
			mode = 0o600 // private keys: owner only
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, mode); err != nil {
			t.Fatal(err)
		}
	}
	cat("gh-server.pem", "server.pem")
	cat("gh-server.key", "server.key")
	cas := []string{"employee-root.pem", "employee-int.pem", "device-ca.pem", "long-int1.pem", "long-int2.pem", "long-int3.pem"}
	if o.checkCRL {
		// OpenSSL reads the CRLs from ca_file too.
		cas = append(cas, "employee-root.crl", "employee-int.crl", "device-ca.crl", "long-int1.crl", "long-int2.crl", "long-int3.crl")
	}
	cat("gh-clients-ca.pem", cas...)
	if len(extraCAs) > 0 {
		f, err := os.OpenFile(filepath.Join(dir, "gh-clients-ca.pem"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range extraCAs {
			f.Write(b)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	eapConf := filepath.Join(dir, "mods-available", "eap")
	b, err := os.ReadFile(eapConf)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, r := range []struct{ re, to string }{
		{`default_eap_type = md5`, `default_eap_type = tls`},
		{`private_key_file = .*`, `private_key_file = ` + dir + `/gh-server.key`},
		{`certificate_file = .*`, `certificate_file = ` + dir + `/gh-server.pem`},
		{`ca_file = .*`, `ca_file = ` + dir + `/gh-clients-ca.pem`},
		{`(?m)^\s*ca_path = \$\{cadir\}`, ``},
		{`tls_max_version = "1.2"`, `tls_max_version = "` + tlsMax + `"`},
	} {
		s = regexp.MustCompile(r.re).ReplaceAllString(s, r.to)
	}
	if o.checkCRL {
		s = regexp.MustCompile(`(?m)^\s*#\s*check_crl = yes`).ReplaceAllString(s, "\tcheck_crl = yes")
		if !strings.Contains(s, "\tcheck_crl = yes") {
			t.Fatal("freeradius eap module: no check_crl to enable")
		}
	}
	if err := os.WriteFile(eapConf, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	clients := fmt.Sprintf("client gh {\n\tipaddr = 127.0.0.1\n\tsecret = %s\n\trequire_message_authenticator = yes\n}\n", testSecret)
	if err := os.WriteFile(filepath.Join(dir, "clients.conf"), []byte(clients), 0o644); err != nil {
		t.Fatal(err)
	}
	// Stay root (do not switch to the freerad user, who cannot read the
	// test's temporary directory).
	rc := filepath.Join(dir, "radiusd.conf")
	rb, err := os.ReadFile(rc)
	if err != nil {
		t.Fatal(err)
	}
	rb = regexp.MustCompile(`(?m)^(\s*)(user|group) = .*$`).ReplaceAll(rb, []byte("$1# $2 dropped by gatehouse tests"))
	if err := os.WriteFile(rc, rb, 0o644); err != nil {
		t.Fatal(err)
	}
	// Each listener (auth, acct, then their IPv6 twins on ::1) gets its own
	// free port, held open until all are chosen so none repeats; nothing
	// assumes 1812/1813 (or port+1) are free.
	var ports []int
	var held []net.PacketConn
	for i := 0; i < 4; i++ {
		addr := "127.0.0.1:0"
		if i >= 2 {
			addr = "[::1]:0"
		}
		l, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		ports = append(ports, l.LocalAddr().(*net.UDPAddr).Port)
	}
	for _, l := range held {
		l.Close()
	}
	port := ports[0]
	// Listen on 127.0.0.1 (auth, acct) and ::1; no inner-tunnel server
	// (EAP-TLS needs none).
	site := filepath.Join(dir, "sites-enabled", "default")
	sb, err := os.ReadFile(site)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sb = regexp.MustCompile(`(?m)^(\s*)port = 0`).ReplaceAllFunc(sb, func(m []byte) []byte {
		n++
		if n > len(ports) {
			t.Fatalf("freeradius site has more than %d listeners", len(ports))
		}
		return []byte(fmt.Sprintf("\tport = %d", ports[n-1]))
	})
	sb = regexp.MustCompile(`(?m)^(\s*)ipaddr = \*`).ReplaceAll(sb, []byte("${1}ipaddr = 127.0.0.1"))
	sb = regexp.MustCompile(`(?m)^(\s*)ipv6addr = ::(\s)`).ReplaceAll(sb, []byte("${1}ipv6addr = ::1${2}"))
	os.Remove(site)
	if err := os.WriteFile(site, sb, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "sites-enabled", "inner-tunnel"))
	ctx, cancel := context.WithCancel(context.Background())
	args := []string{"-f", "-l", "stdout", "-d", dir}
	if debug {
		args = []string{"-X", "-d", dir}
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	var logBuf syncBuilder
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			logBuf.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Ready to process requests") {
				ready <- true
			}
		}
		io.Copy(io.Discard, out)
		ready <- false
	}()
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("freeradius log:\n%s", logBuf.String())
		}
	})
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("freeradius did not start:\n%s", logBuf.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("freeradius did not start in time:\n%s", logBuf.String())
	}
	return fmt.Sprintf("127.0.0.1:%d", port), cmd.Process.Pid
}

// TestRadbenchAgainstFreeRADIUS shows radbench's supplicant is generic:
// it authenticates against FreeRADIUS (TLS 1.2 and 1.3), Message-
// Authenticator and MPPE keys checked.
func TestRadbenchAgainstFreeRADIUS(t *testing.T) {
	for _, v := range []string{"1.2", "1.3"} {
		t.Run("tls"+v, func(t *testing.T) {
			addr, _ := startFreeRADIUS(t, v, true)
			p := getPKI(t)
			c := &radbench.Client{Addr: addr, Secret: []byte(testSecret), Timeout: 2 * time.Second}
			conf := p.clientTLS(&p.aliceChain, 0)
			res, err := c.Authenticate(context.Background(), "alice", conf) // no realm: the stock config proxies example.com
			if err != nil {
				t.Fatal(err)
			}
			if !res.Accepted {
				t.Fatalf("rejected by FreeRADIUS")
			}
			if res.TLS.Version != map[string]uint16{"1.2": 0x0303, "1.3": 0x0304}[v] {
				t.Errorf("TLS version %x", res.TLS.Version)
			}
			if len(res.MSK) != 64 || string(res.RecvKey) != string(res.MSK[:32]) || string(res.SendKey) != string(res.MSK[32:]) {
				t.Errorf("MPPE keys from FreeRADIUS do not match our MSK")
			}
			var out strings.Builder
			r, err := radbench.Run(context.Background(), radbench.Config{Addr: addr, Secret: testSecret, Certificate: p.aliceChain,
				Concurrency: 2, Count: 10, Progress: -1, TLSVersion: v}, &out)
			if err != nil || r.Accepts != 10 {
				t.Errorf("radbench: %v %+v\n%s", err, r, out.String())
			}
		})
	}
}

// syncBuilder is a strings.Builder safe for one writer and one reader.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) WriteString(x string) {
	s.mu.Lock()
	s.b.WriteString(x)
	s.mu.Unlock()
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFreeRADIUSBench measures FreeRADIUS with radbench for comparison
// (radius/testdata/compare-freeradius.sh): set GATEHOUSE_FREERADIUS_BENCH
// to the duration (e.g. 10s); GATEHOUSE_RADBENCH_TLS is the TLS version
// (default 1.2), GATEHOUSE_RADBENCH_CONCURRENCY the supplicants (default
// 4), GATEHOUSE_RADBENCH_GROUPS the key exchange groups offered (default
// Go's). FreeRADIUS requires CRLs for the whole chain, as gatehouse's
// shipped configuration does. GATEHOUSE_FREERADIUS_DEBUG=1 runs it with -X.
func TestFreeRADIUSBench(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("GATEHOUSE_FREERADIUS_BENCH"))
	if err != nil {
		t.Skip("GATEHOUSE_FREERADIUS_BENCH not set")
	}
	v := envOr("GATEHOUSE_RADBENCH_TLS", "1.2")
	conc, err := strconv.Atoi(envOr("GATEHOUSE_RADBENCH_CONCURRENCY", "4"))
	if err != nil {
		t.Fatal(err)
	}
	groups, err := radbench.ParseGroups(os.Getenv("GATEHOUSE_RADBENCH_GROUPS"))
	if err != nil {
		t.Fatal(err)
	}
	addr, pid := startFreeRADIUSWith(t, frOptions{tlsMax: v, checkCRL: true, debug: os.Getenv("GATEHOUSE_FREERADIUS_DEBUG") != ""})
	p := getPKI(t)
	res, err := radbench.Run(context.Background(), radbench.Config{Addr: addr, Secret: testSecret, Certificate: p.aliceChain,
		Identity: "alice", Concurrency: conc, Duration: d, TLSVersion: v, Groups: groups, ServerPID: pid, Progress: -1}, os.Stdout)
	if err != nil || res.Accepts == 0 {
		t.Fatalf("%v %+v", err, res)
	}
}

// TestFreeRADIUSBenchChecksCRL: the FreeRADIUS that TestFreeRADIUSBench
// measures really checks the CRL (so the comparison is like for like):
// alice is accepted, carol (listed by employee-int.crl) rejected.
func TestFreeRADIUSBenchChecksCRL(t *testing.T) {
	addr, _ := startFreeRADIUSWith(t, frOptions{tlsMax: "1.2", checkCRL: true})
	c := &radbench.Client{Addr: addr, Secret: []byte(testSecret), Timeout: 2 * time.Second}
	for _, u := range []struct {
		name   string
		accept bool
	}{{"alice", true}, {"carol", false}} {
		cert, err := tls.LoadX509KeyPair(pkiDir+"/"+u.name+"-chain.pem", pkiDir+"/"+u.name+".key")
		if err != nil {
			t.Fatal(err)
		}
		conf := &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
			MaxVersion: tls.VersionTLS12, CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}
		res, err := c.Authenticate(context.Background(), u.name, conf)
		if err != nil {
			t.Fatalf("%s: %v", u.name, err)
		}
		if res.Accepted != u.accept {
			t.Errorf("%s: accepted %v, want %v", u.name, res.Accepted, u.accept)
		}
	}
}
