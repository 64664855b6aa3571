package main

import (
	"context"
	"fmt"
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

// ipCmd runs ip(8) and fails the test on error.
func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestHostapdDisconnect uses real parts end to end: wpa_supplicant (wired
// 802.1X, in a network namespace) authenticates alice through hostapd
// (driver=wired, on the other end of a veth pair) against gatehouse;
// hostapd sends Accounting-Start echoing gatehouse's Class token. Then the
// policy is edited so that no rule admits alice; after the reload gatehouse
// sends a Disconnect-Request to hostapd's DAS port (hostapd requires a
// Message-Authenticator and Event-Timestamp), hostapd ACKs, drops the
// station and sends Accounting-Stop.
func TestHostapdDisconnect(t *testing.T) {
	policytest.RequireInterop(t, runtime.GOOS == "linux" && os.Geteuid() == 0, "needs root for a veth pair and a network namespace")
	hostapd := policytest.RequireTool(t, "hostapd")
	policytest.RequireTool(t, "wpa_supplicant")
	policytest.RequireTool(t, "ip")

	// A veth pair: the access point's port in this namespace (no IP; only
	// EAPOL crosses it), the supplicant's in its own namespace.
	a, b, ns := fmt.Sprintf("gh-%d-a", os.Getpid()), fmt.Sprintf("gh-%d-b", os.Getpid()), fmt.Sprintf("gh-%d-ns", os.Getpid())
	ipCmd(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ipCmd(t, "link", "add", a, "type", "veth", "peer", "name", b)
	t.Cleanup(func() { exec.Command("ip", "link", "del", a).Run() })
	ipCmd(t, "link", "set", b, "netns", ns)
	os.WriteFile("/proc/sys/net/ipv6/conf/"+a+"/disable_ipv6", []byte("1"), 0o644)
	ipCmd(t, "link", "set", a, "up")
	ipCmd(t, "-n", ns, "link", "set", b, "up")

	auth, acct, das := freeUDPPort(t), freeUDPPort(t), freeUDPPort(t)
	f := writeConfig(t, func(s string) string {
		s = replace(`listen = "127.0.0.1:1812"`, fmt.Sprintf(`listen = "127.0.0.1:%d"`, auth))(s)
		s = replace(`accounting_listen = "127.0.0.1:1813"`, fmt.Sprintf(`accounting_listen = "127.0.0.1:%d"`, acct))(s)
		s = replace(`revalidate_every = "60s"`, `revalidate_every = "1h"`)(s) // only the reload re-validates
		s = replace(`log_level = "info"`, `log_level = "debug"`)(s)
		return replace(`coa_port = 3799`, fmt.Sprintf(`coa_port = %d`, das))(s)
	})
	cfgText, _ := os.ReadFile(f)
	m := regexp.MustCompile(`(?m)^state_dir = "([^"]+)"`).FindSubmatch(cfgText)
	if m == nil {
		t.Fatal("no state_dir in the test config")
	}
	state := string(m[1])
	srv := startServe(t, f, nil)
	logs := srv.logs

	dir := t.TempDir()
	pki, _ := filepath.Abs("../../testdata/pki")
	hconf := filepath.Join(dir, "hostapd.conf")
	os.WriteFile(hconf, []byte(fmt.Sprintf(`interface=%s
driver=wired
logger_stdout=-1
logger_stdout_level=1
ieee8021x=1
eap_reauth_period=0
use_pae_group_addr=1
own_ip_addr=127.0.0.1
nas_identifier=gh-test-ap
auth_server_addr=127.0.0.1
auth_server_port=%d
auth_server_shared_secret=testing123
acct_server_addr=127.0.0.1
acct_server_port=%d
acct_server_shared_secret=testing123
radius_das_port=%d
radius_das_client=127.0.0.1 testing123
radius_das_require_event_timestamp=1
radius_das_require_message_authenticator=1
`, a, auth, acct, das)), 0o600)
	sconf := filepath.Join(dir, "supplicant.conf")
	os.WriteFile(sconf, []byte(fmt.Sprintf(`ap_scan=0
network={
	key_mgmt=IEEE8021X
	eap=TLS
	identity="anonymous"
	ca_cert="%[1]s/server-ca.pem"
	client_cert="%[1]s/alice.pem"
	private_key="%[1]s/alice.key"
	eapol_flags=0
}
`, pki)), 0o600)

	pctx, pcancel := context.WithCancel(context.Background())
	var hlog, wlog syncBuffer
	h := exec.CommandContext(pctx, hostapd, hconf)
	h.Stdout, h.Stderr = &hlog, &hlog
	s := exec.CommandContext(pctx, "ip", "netns", "exec", ns, "wpa_supplicant", "-D", "wired", "-i", b, "-c", sconf)
	s.Stdout, s.Stderr = &wlog, &wlog
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { pcancel(); h.Wait() }()
	waitFor(t, "hostapd to start", func() bool {
		return strings.Contains(hlog.String(), "AP-ENABLED") || strings.Contains(hlog.String(), "RADIUS")
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { pcancel(); s.Wait() }()

	acctFile := filepath.Join(state, "accounting.jsonl")
	acctHas := func(status string) bool {
		b, _ := os.ReadFile(acctFile)
		return strings.Contains(string(b), `"status":"`+status+`"`)
	}
	waitFor(t, "802.1X success and Accounting-Start", func() bool {
		return strings.Contains(wlog.String(), "CTRL-EVENT-EAP-SUCCESS") && acctHas("start")
	})

	// hostapd echoed gatehouse's Class token in its accounting.
	waitFor(t, "accounting linked by Class", func() bool { return strings.Contains(logs.String(), "linked_by=class") })

	b2, _ := os.ReadFile(f)
	tmp := f + ".new"
	os.WriteFile(tmp, []byte(replace(`groups = ["cn=engineering,ou=groups,dc=example,dc=com"]`, `groups = ["cn=nobody,ou=groups,dc=example,dc=com"]`)(string(b2))), 0o600)
	changed := time.Now()
	os.Rename(tmp, f)
	waitFor(t, "hostapd to drop the station", func() bool { return strings.Contains(hlog.String(), "AP-STA-DISCONNECTED") })
	t.Logf("policy edit to hostapd dropping the station: %v (file watcher and reload included)", time.Since(changed))
	waitFor(t, "Disconnect-ACK and Accounting-Stop", func() bool {
		l := logs.String()
		return strings.Contains(l, "event=disconnect") && strings.Contains(l, "result=ack") && acctHas("stop")
	})
	if !strings.Contains(logs.String(), "user=alice@corp.example.com") {
		t.Errorf("disconnect log without the user:\n%s", tail(logs.String()))
	}
	pcancel()
	h.Wait()
	s.Wait()
	srv.stopClean(t)
}
