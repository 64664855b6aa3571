package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

// A wired 802.1X port for the hostapd tests: a veth pair whose end a is
// hostapd's port (driver=wired) in this namespace and whose end b is
// wpa_supplicant's, in its own namespace ns. No IP: only EAPOL crosses it.

// wiredVeth makes the namespace and the veth pair, named from the process
// id and tag, and removes them when the test ends.
func wiredVeth(t *testing.T, tag string) (a, b, ns string) {
	t.Helper()
	pid := os.Getpid()
	a, b, ns = fmt.Sprintf("gh-%d-%sa", pid, tag), fmt.Sprintf("gh-%d-%sb", pid, tag), fmt.Sprintf("gh-%d-%sns", pid, tag)
	ipCmd(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ipCmd(t, "link", "add", a, "type", "veth", "peer", "name", b)
	t.Cleanup(func() { exec.Command("ip", "link", "del", a).Run() })
	ipCmd(t, "link", "set", b, "netns", ns)
	os.WriteFile("/proc/sys/net/ipv6/conf/"+a+"/disable_ipv6", []byte("1"), 0o644)
	ipCmd(t, "link", "set", a, "up")
	ipCmd(t, "-n", ns, "link", "set", b, "up")
	return a, b, ns
}

// writeHostapdConf writes dir/hostapd.conf: a wired access point on iface
// whose RADIUS servers (127.0.0.1, secret testing123) are the
// authentication ports auth and accounting ports acct, in that order of
// preference, and whose DAS (Disconnect) port is das.
func writeHostapdConf(dir, iface string, auth, acct []int, das int) string {
	var servers strings.Builder
	for _, p := range auth {
		fmt.Fprintf(&servers, "auth_server_addr=127.0.0.1\nauth_server_port=%d\nauth_server_shared_secret=testing123\n", p)
	}
	for _, p := range acct {
		fmt.Fprintf(&servers, "acct_server_addr=127.0.0.1\nacct_server_port=%d\nacct_server_shared_secret=testing123\n", p)
	}
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
%sradius_das_port=%d
radius_das_client=127.0.0.1 testing123
radius_das_require_event_timestamp=1
radius_das_require_message_authenticator=1
`, iface, servers.String(), das)), 0o600)
	return hconf
}

// writeSupplicantConf writes dir/supplicant.conf: wired EAP-TLS as alice
// (testdata/pki), with a control socket at ctrl unless ctrl is empty.
func writeSupplicantConf(dir, ctrl string) string {
	pki, _ := filepath.Abs("../../testdata/pki")
	var head string
	if ctrl != "" {
		head = "ctrl_interface=" + ctrl + "\n"
	}
	sconf := filepath.Join(dir, "supplicant.conf")
	os.WriteFile(sconf, []byte(fmt.Sprintf(`%[2]sap_scan=0
network={
	key_mgmt=IEEE8021X
	eap=TLS
	identity="anonymous"
	ca_cert="%[1]s/server-ca.pem"
	client_cert="%[1]s/alice.pem"
	private_key="%[1]s/alice.key"
	eapol_flags=0
}
`, pki, head)), 0o600)
	return sconf
}

// wiredProcs is hostapd and wpa_supplicant running on a wired port.
type wiredProcs struct {
	hlog, wlog policytest.SyncBuffer // their output
	cancel     context.CancelFunc
	h, s       *exec.Cmd
	once       sync.Once
}

// startWired starts hostapd (the binary hostapd, with hostapdArgs before
// its config file hconf), waits for it to come up, then starts
// wpa_supplicant with sconf on iface in namespace ns. Both stop at
// w.stop() or at the latest when the test ends.
func startWired(t *testing.T, hostapd string, hostapdArgs []string, hconf, ns, iface, sconf string) *wiredProcs {
	t.Helper()
	pctx, pcancel := context.WithCancel(context.Background())
	w := &wiredProcs{cancel: pcancel}
	w.h = exec.CommandContext(pctx, hostapd, append(hostapdArgs, hconf)...)
	w.h.Stdout, w.h.Stderr = &w.hlog, &w.hlog
	if err := w.h.Start(); err != nil {
		pcancel()
		t.Fatal(err)
	}
	t.Cleanup(w.stop)
	waitFor(t, "hostapd to start", func() bool {
		return strings.Contains(w.hlog.String(), "AP-ENABLED") || strings.Contains(w.hlog.String(), "RADIUS")
	})
	s := exec.CommandContext(pctx, "ip", "netns", "exec", ns, "wpa_supplicant", "-D", "wired", "-i", iface, "-c", sconf)
	s.Stdout, s.Stderr = &w.wlog, &w.wlog
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	w.s = s
	return w
}

// stop stops both processes and waits for them; it may be called again.
func (w *wiredProcs) stop() {
	w.once.Do(func() {
		w.cancel()
		w.h.Wait()
		if w.s != nil {
			w.s.Wait()
		}
	})
}
