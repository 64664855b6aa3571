package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

// freeUDPPort returns a loopback UDP port that was free a moment ago.
func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// eapolTest runs eapol_test as a Wi-Fi client with one of the test PKI's
// certificates against gatehouse and returns its output.
func eapolTest(t *testing.T, bin string, port int, cert string, tls13 bool) (string, error) {
	t.Helper()
	pki, _ := filepath.Abs("../../testdata/pki")
	return eapolRun(t, bin, port, pki, filepath.Join(pki, cert+".pem"), filepath.Join(pki, strings.TrimSuffix(cert, "-chain")+".key"), tls13, "")
}

// eapolRun runs eapol_test (bin) against gatehouse's RADIUS port with
// EAP-TLS: the server CA from the directory pki, the client certificate
// certFile and key keyFile, TLS 1.3 on or off, and extra (one more line,
// if not empty) in the network block; it returns eapol_test's output.
func eapolRun(t *testing.T, bin string, port int, pki, certFile, keyFile string, tls13 bool, extra string) (string, error) {
	t.Helper()
	phase1 := "tls_disable_tlsv1_3=1"
	if tls13 {
		phase1 = "tls_disable_tlsv1_3=0"
	}
	if extra != "" {
		extra = "\n\t" + extra
	}
	conf := fmt.Sprintf(`network={
	key_mgmt=WPA-EAP
	eap=TLS
	identity="anonymous"
	ca_cert="%[1]s/server-ca.pem"
	domain_suffix_match="gatehouse.test"
	client_cert="%[2]s"
	private_key="%[3]s"
	phase1="%[4]s"%[5]s
	eapol_flags=0
}
`, pki, certFile, keyFile, phase1, extra)
	cf := filepath.Join(t.TempDir(), "eapol.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-c", cf, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-s", "testing123", "-t", "10", "-r", "0").CombinedOutput()
	return string(out), err
}

// served is `gatehouse serve` running in this process on a config file.
type served struct {
	logs   *policytest.SyncBuffer
	before int // goroutines before it started
	cancel context.CancelFunc
	done   chan int
	code   int
	ended  bool
}

// startServe runs `gatehouse serve -config f` in process and waits until
// RADIUS listens. stdout may be nil (then it shares the log buffer).
func startServe(t testing.TB, f string, stdout io.Writer) *served {
	t.Helper()
	s := &served{logs: &policytest.SyncBuffer{}, before: runtime.NumGoroutine(), done: make(chan int, 1)}
	if stdout == nil {
		stdout = s.logs
	}
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	go func() { s.done <- run(ctx, []string{"serve", "-config", f}, stdout, s.logs) }()
	t.Cleanup(func() { s.stop() })
	waitFor(t, "radius listening", func() bool { return strings.Contains(s.logs.String(), "radius: listening") })
	return s
}

// stop cancels serve (as SIGTERM does) and returns its exit code; it may
// be called more than once.
func (s *served) stop() int {
	if !s.ended {
		s.ended = true
		s.cancel()
		s.code = <-s.done
	}
	return s.code
}

// stopClean stops serve and fails the test unless it exited 0 and every
// goroutine it started has ended.
func (s *served) stopClean(t testing.TB) {
	t.Helper()
	if code := s.stop(); code != exitOK {
		t.Errorf("serve exited %d\n%s", code, s.logs.String())
	}
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= s.before+2 })
}

var reVLAN = regexp.MustCompile(`Attribute 81 \(Tunnel-Private-Group-Id\) length=\d+\s+Value: ([0-9a-f]+)`)

// TestServeEndToEnd runs `gatehouse serve` on the shipped config (the LDIF
// directory, the test PKI, the real policy) and authenticates with a real
// supplicant: accepted, rejected, and the VLAN following a policy reload.
func TestServeEndToEnd(t *testing.T) {
	bin := policytest.RequireTool(t, "eapol_test")
	auth, acct := freeUDPPort(t), freeUDPPort(t)
	f := writeConfig(t, func(s string) string {
		s = replace(`listen = "127.0.0.1:1812"`, fmt.Sprintf(`listen = "127.0.0.1:%d"`, auth))(s)
		return replace(`accounting_listen = "127.0.0.1:1813"`, fmt.Sprintf(`accounting_listen = "127.0.0.1:%d"`, acct))(s)
	})
	srv := startServe(t, f, nil)
	logs := srv.logs

	tests := []struct {
		cert   string
		tls13  bool
		accept bool
		vlan   string // hex of the Tunnel-Private-Group-Id
	}{
		{"alice", false, true, "3130"},
		{"alice", true, true, "3130"},
		{"thermostat-0001", true, true, "3330"},
		{"erin-chain", true, true, "3130"},
		{"bob", false, true, "3230"},
		{"frank", true, false, ""},
		{"carol", true, false, ""},
		{"dave", false, false, ""},
		{"mallory-spoofed-chain", true, false, ""},
		{"noeku", true, false, ""},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/tls1.3=%v", tt.cert, tt.tls13)
		out, err := eapolTest(t, bin, auth, tt.cert, tt.tls13)
		if tt.accept {
			m := reVLAN.FindAllStringSubmatch(out, -1)
			if err != nil || !strings.Contains(out, "MPPE keys OK: 1  mismatch: 0") || len(m) == 0 || m[len(m)-1][1] != tt.vlan {
				t.Errorf("%s: want accept with VLAN %s; err %v; vlan %v\n%s", name, tt.vlan, err, m, tail(out))
			}
		} else if err == nil || !strings.Contains(out, "CTRL-EVENT-EAP-FAILURE") {
			t.Errorf("%s: want EAP-Failure; err %v\n%s", name, err, tail(out))
		}
	}

	// Edit the policy: engineering moves to VLAN 11. The file watcher
	// reloads it and the next authentication gets the new VLAN.
	b, _ := os.ReadFile(f)
	tmp := f + ".new"
	os.WriteFile(tmp, []byte(replace(`vlan = "10"`, `vlan = "11"`)(string(b))), 0o600)
	os.Rename(tmp, f)
	waitFor(t, "policy reload", func() bool { return strings.Contains(logs.String(), "policy reloaded") })
	out, err := eapolTest(t, bin, auth, "alice", true)
	if m := reVLAN.FindAllStringSubmatch(out, -1); err != nil || len(m) == 0 || m[len(m)-1][1] != "3131" {
		t.Errorf("after reload: want VLAN 11; err %v, %v", err, m)
	}
	if strings.Contains(logs.String(), "testing123") {
		t.Error("the shared secret reached the log")
	}
	srv.stopClean(t)
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}
