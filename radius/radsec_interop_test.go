package radius

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

// radsecproxyUDPSecret is the secret between eapol_test/radclient and
// radsecproxy (radclient's helper uses testSecret).
const radsecproxyUDPSecret = testSecret

// startRadsecproxy runs radsecproxy in the foreground with its own
// configuration: UDP in on a free 127.0.0.1 port (clients 127.0.0.1 with
// radsecproxyUDPSecret), every realm to gatehouse's RadSec address over
// TLS, presenting certFile/keyFile and trusting gatehouse's server CA. It
// returns the UDP address and radsecproxy's log.
func startRadsecproxy(t *testing.T, bin string, gatehouse net.Addr, caFile, certFile, keyFile string) (string, *policytest.SyncBuffer) {
	t.Helper()
	// A free UDP port: bound, then released for radsecproxy.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	gh := gatehouse.(*net.TCPAddr)
	conf := fmt.Sprintf(`# radsecproxy: UDP in, RadSec out to gatehouse (test)
ListenUDP 127.0.0.1:%d
LogLevel 4
tls default {
	CACertificateFile %s
	CertificateFile %s
	CertificateKeyFile %s
	TlsVersion TLS1_2:
}
client eapol {
	host 127.0.0.1
	type udp
	secret %s
}
server gatehouse {
	host 127.0.0.1
	port %d
	type tls
	secret radsec
	CertificateNameCheck off
	MatchCertificateAttribute SubjectAltName:DNS:/^gatehouse\.test$/
	StatusServer on
}
realm * {
	server gatehouse
	accountingServer gatehouse
}
`, port, caFile, certFile, keyFile, radsecproxyUDPSecret, gh.Port)
	cf := filepath.Join(t.TempDir(), "radsecproxy.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-f", "-c", cf, "-i", filepath.Join(t.TempDir(), "pid"))
	out := &policytest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() || os.Getenv("GATEHOUSE_TEST_LOG") != "" {
			t.Logf("radsecproxy log:\n%s", out.String())
		}
	})
	// Ready once it has bound its UDP port.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			break // in use: radsecproxy listens
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("radsecproxy did not bind 127.0.0.1:%d:\n%s", port, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Sprintf("127.0.0.1:%d", port), out
}

// TestRadsecproxyInterop: eapol_test → radsecproxy (UDP in) → RadSec →
// gatehouse. Accept with VLAN and MPPE keys, reject for a user without a
// rule and for an untrusted certificate; a radsecproxy presenting a
// certificate gatehouse does not trust gets no answer, and gatehouse logs
// the refusal.
func TestRadsecproxyInterop(t *testing.T) {
	proxy := requireTool(t, "radsecproxy")
	eapol := requireTool(t, "eapol_test")
	acctFile := filepath.Join(t.TempDir(), "accounting.jsonl")
	s := startRadSec(t, func(c *Config) { c.AccountingFile = acctFile })
	dir := writeClientPEMs(t, s.pki)
	caFile := filepath.Join(dir, "ca.pem") // gatehouse's server CA
	rp := s.rs

	t.Run("trusted proxy", func(t *testing.T) {
		addr, _ := startRadsecproxy(t, proxy, s.RadSecAddr(), caFile, filepath.Join(rp.dir, "ap.pem"), filepath.Join(rp.dir, "ap.key"))
		for _, tc := range []eapolCase{
			{name: "accept tls1.2", cert: "alice", secret: radsecproxyUDPSecret, accept: true, vlan: "10"},
			{name: "accept tls1.3", cert: "alice", tls13: true, secret: radsecproxyUDPSecret, accept: true, vlan: "10"},
			{name: "device", cert: "thermostat", secret: radsecproxyUDPSecret, accept: true, vlan: "30"},
			{name: "no rule", cert: "frank", tls13: true, secret: radsecproxyUDPSecret},
			{name: "untrusted user", cert: "mallory", secret: radsecproxyUDPSecret},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, err := runEAPOLTest(t, eapol, dir, addr, tc)
				defer func() {
					if t.Failed() || os.Getenv("GATEHOUSE_TEST_LOG") != "" {
						t.Log(out)
					}
				}()
				if !tc.accept {
					if err == nil || !strings.Contains(out, "CTRL-EVENT-EAP-FAILURE") {
						t.Errorf("want EAP-Failure, err %v", err)
					}
					return
				}
				if err != nil || !strings.Contains(out, "SUCCESS") {
					t.Fatalf("eapol_test failed: %v", err)
				}
				m := reMPPE.FindStringSubmatch(out)
				if m == nil || m[1] != "1" || m[2] != "0" {
					t.Errorf("MPPE keys: %v", m)
				}
				msk, send, recv := lastHex(reMSK, out), lastHex(reSendKey, out), lastHex(reRecvKey, out)
				if len(msk) != 64*3 || recv != msk[:32*3] || send != msk[32*3:] {
					t.Errorf("MPPE keys do not split the MSK as Recv=MSK[0:32], Send=MSK[32:64]")
				}
				vlan := fmt.Sprintf("%x", tc.vlan)
				if !reVLANAttr(out, vlan) {
					t.Errorf("no Tunnel-Private-Group-Id %q in the Access-Accept", tc.vlan)
				}
			})
		}
		// Accounting through the proxy: recorded (durably, before the
		// answer) under the radsec_client's name.
		if _, err := exec.LookPath("radclient"); err == nil || os.Getenv("GATEHOUSE_REQUIRE_INTEROP") != "" {
			ua, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range []string{"Start", "Stop"} {
				out, err := radclient(t, ua, "acct", "Acct-Status-Type = "+st+"\nAcct-Session-Id = \"rsp-1\"\nUser-Name = \"bob\"\nAcct-Session-Time = 60\n")
				if err != nil || !strings.Contains(out, "Received Accounting-Response") {
					t.Errorf("acct %s through radsecproxy: %v\n%s", st, err, out)
				}
			}
			recs := readAcct(t, acctFile)
			if len(recs) != 2 || recs[0].Status != "start" || recs[1].Status != "stop" || recs[1].NAS != "aps" || recs[1].SessionID != "rsp-1" {
				t.Errorf("records %+v", recs)
			}
		}
		if st := s.RadSecStats(); st.Accepted < 1 || st.Refused != 0 {
			t.Errorf("RadSec stats %+v", st)
		}
	})

	t.Run("untrusted proxy", func(t *testing.T) {
		before := s.RadSecStats().Refused
		addr, _ := startRadsecproxy(t, proxy, s.RadSecAddr(), caFile, filepath.Join(rp.dir, "rogue.pem"), filepath.Join(rp.dir, "rogue.key"))
		out, err := runEAPOLTest(t, eapol, dir, addr, eapolCase{cert: "alice", secret: radsecproxyUDPSecret, noAnswer: true})
		if err == nil || strings.Contains(out, "SUCCESS") || strings.Contains(out, "Access-Accept") {
			t.Errorf("login through an untrusted radsecproxy: err %v\n%s", err, out)
		}
		waitFor(t, "refusal counted", func() bool { return s.RadSecStats().Refused > before })
		found := false
		for _, m := range s.log.msgs("radius: radsec: connection refused") {
			if e, _ := m["err"].(string); strings.Contains(e, "certificate") {
				found = true
			}
		}
		if !found {
			t.Errorf("refusal not logged with the certificate error")
		}
	})
}

// reVLANAttr reports whether eapol_test printed a Tunnel-Private-Group-Id
// (81) whose value is hexVLAN (eapol_test dumps attribute values in hex).
func reVLANAttr(out, hexVLAN string) bool {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.Contains(l, "Attribute 81 (Tunnel-Private-Group-Id)") && i+1 < len(lines) {
			v := strings.ReplaceAll(lines[i+1], " ", "")
			if strings.HasSuffix(v, hexVLAN) {
				return true
			}
		}
	}
	return false
}
