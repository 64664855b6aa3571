package main

import (
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
	a, b, ns := wiredVeth(t, "")

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
	hconf := writeHostapdConf(dir, a, []int{auth}, []int{acct}, das)
	sconf := writeSupplicantConf(dir, "")
	w := startWired(t, hostapd, nil, hconf, ns, b, sconf)
	hlog, wlog := &w.hlog, &w.wlog

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
	w.stop()
	srv.stopClean(t)
}
