package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy/policytest"
	"github.com/gatehouse/gatehouse/vpn"
)

// runCmd runs a gatehouse command in process and returns its exit code and
// standard output (stderr appended).
func runCmd(args ...string) (int, string) {
	var out bytes.Buffer
	code := run(context.Background(), args, &out, &out)
	return code, out.String()
}

// TestServeReloadConfirmCut: 20 Wi-Fi sessions are live under `gatehouse
// serve`; the policy is edited so that no rule admits any of them (as a
// truncated file that still compiles would). `gatehouse reload` reports the
// cut as held (exit 4), no Disconnect-Request is sent, /readyz stays 200
// with a warning; `gatehouse reload --confirm-cut` releases it and every
// session is disconnected.
func TestServeReloadConfirmCut(t *testing.T) {
	bin := policytest.RequireTool(t, "eapol_test")
	nas := newDisconnectListener(t, "testing123")
	var disconnects atomic.Int32
	go func() {
		for range nas.got {
			disconnects.Add(1)
		}
	}()
	auth, acct := freeUDPPort(t), freeUDPPort(t)
	f := writeConfig(t, func(s string) string {
		s = replace(`listen = "127.0.0.1:1812"`, fmt.Sprintf(`listen = "127.0.0.1:%d"`, auth))(s)
		s = replace(`accounting_listen = "127.0.0.1:1813"`, fmt.Sprintf(`accounting_listen = "127.0.0.1:%d"`, acct))(s)
		s = replace(`revalidate_every = "60s"`, `revalidate_every = "1h"`)(s)
		return replace(`coa_port = 3799`, fmt.Sprintf(`coa_port = %d`, nas.port()))(s)
	})
	srv := startServe(t, f, nil)
	logs := srv.logs
	const sessions = 20
	for i := range sessions {
		if out, err := eapolTest(t, bin, auth, "alice", i%2 == 0); err != nil {
			t.Fatalf("eapol_test #%d: %v\n%s", i, err, tail(out))
		}
	}
	// Nothing changed: nothing held.
	if code, out := runCmd("reload", "-config", f); code != exitOK || !strings.Contains(out, "policy reloaded") ||
		!strings.Contains(out, fmt.Sprintf("wifi: %d live, %d judged: %d allowed", sessions, sessions, sessions)) {
		t.Fatalf("reload: exit %d\n%s", code, out)
	}

	// Nobody's group has a rule any more.
	b, _ := os.ReadFile(f)
	edited := replace(`groups = ["cn=engineering,ou=groups,dc=example,dc=com"]`, `groups = ["cn=nobody,ou=groups,dc=example,dc=com"]`)(string(b))
	os.WriteFile(f+".new", []byte(edited), 0o600)
	os.Rename(f+".new", f)
	code, out := runCmd("reload", "-config", f)
	if code != exitHeld || !strings.Contains(out, fmt.Sprintf("CUT HELD at wifi: %d of %d live", sessions, sessions)) ||
		!strings.Contains(out, "no_rule") {
		t.Fatalf("reload of a policy cutting everyone: exit %d\n%s\nlog:\n%s", code, out, logs.String())
	}
	t.Logf("gatehouse reload:\n%s", out)
	if strings.Count(logs.String(), "mass cut held") == 0 || !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("no ERROR about the held cut\n%s", tail(logs.String()))
	}
	m := reMetricsAddr.FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no metrics address in the log")
	}
	resp, err := http.Get("http://" + m[1] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), fmt.Sprintf("policy: cut held (%d Wi-Fi sessions) — confirm with gatehouse reload --confirm-cut", sessions)) {
		t.Errorf("/readyz: %d\n%s", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), fmt.Sprintf(`gatehouse_revalidate_held_cuts{door="wifi"} %d`, sessions)) {
		t.Errorf("metrics lack the held cuts")
	}
	time.Sleep(300 * time.Millisecond)
	if n := disconnects.Load(); n != 0 {
		t.Fatalf("%d Disconnect-Requests sent while the cut is held", n)
	}

	code, out = runCmd("reload", "-config", f, "--confirm-cut")
	if code != exitOK || !strings.Contains(out, fmt.Sprintf("confirmed: wifi: %d of %d live", sessions, sessions)) ||
		!strings.Contains(out, fmt.Sprintf("%d cut (policy), 0 held", sessions)) {
		t.Fatalf("reload --confirm-cut: exit %d\n%s", code, out)
	}
	t.Logf("gatehouse reload --confirm-cut:\n%s", out)
	waitFor(t, "disconnects", func() bool { return disconnects.Load() == sessions })
	// Nothing left to confirm.
	if code, out := runCmd("reload", "-config", f, "--confirm-cut"); code != exitFailure || !strings.Contains(out, "nothing to confirm") {
		t.Errorf("second confirm: exit %d\n%s", code, out)
	}
	// The VPN is off in this config: peers remove goes to the server,
	// which says so, rather than editing a registry under it.
	if code, out := runCmd("peers", "remove", "-config", f, "alice"); code != exitFailure || !strings.Contains(out, "VPN is not enabled") {
		t.Errorf("peers remove: exit %d\n%s", code, out)
	}
	srv.stopClean(t)
	if code, out := runCmd("reload", "-config", f); code != exitFailure || !strings.Contains(out, "no running gatehouse") {
		t.Errorf("reload without a server: exit %d\n%s", code, out)
	}
}

// seedPeers writes registry records for identities into stateDir/vpn.
func seedPeers(t *testing.T, stateDir string, identities ...string) {
	t.Helper()
	st := vpn.NewFileStore(filepath.Join(stateDir, "vpn", "peers"))
	os.MkdirAll(st.Dir, 0o700)
	for i, id := range identities {
		k, err := vpn.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		r := &vpn.PeerRecord{Fingerprint: fmt.Sprintf("%064x", i+1), Identity: id, Rule: "engineering", PublicKey: k.Public(),
			Address: netip.AddrFrom4([4]byte{100, 96, 0, byte(2 + i)}), NotAfter: time.Now().Add(24 * time.Hour)}
		if i == 1 {
			r.Suspended = &vpn.Suspension{Since: time.Now(), Code: "no_rule", Reason: "no rule matched"}
		}
		if err := st.Save(r); err != nil {
			t.Fatal(err)
		}
	}
}

func stateDirTest(t *testing.T, f string) string {
	d, err := stateDirOf(f)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPeersStaleSocket: after a crash the UAPI socket file stays but
// nothing answers; `gatehouse peers` lists the registry, says the device
// is not running, and exits 0.
func TestPeersStaleSocket(t *testing.T) {
	f := writeConfig(t, nil)
	dir := stateDirTest(t, f)
	seedPeers(t, dir, "alice", "bob")
	old := uapiDir
	uapiDir = t.TempDir()
	t.Cleanup(func() { uapiDir = old })
	sock := filepath.Join(uapiDir, "gh0.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // the file stays, as after kill -9
	if _, err := os.Stat(sock); err != nil {
		t.Fatal(err)
	}
	code, out := runCmd("peers", "-config", f)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{"alice", "bob", "suspended since", "no_rule (no rule matched)", "2 peers (1 suspended)", "device gh0 not running"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q\n%s", want, out)
		}
	}
	// An unreadable record is reported, not fatal, and left in place.
	bad := filepath.Join(dir, "vpn", "peers", fmt.Sprintf("%064x", 99)+".json")
	os.WriteFile(bad, []byte("{trunc"), 0o600)
	if code, out := runCmd("peers", "-config", f); code != exitOK || !strings.Contains(out, "unreadable record") {
		t.Errorf("with an unreadable record: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(bad); err != nil {
		t.Error("peers changed the registry")
	}
}

// TestPeersRemoveOffline: with no server running, `gatehouse peers remove`
// edits the registry directly.
func TestPeersRemoveOffline(t *testing.T) {
	f := writeConfig(t, nil)
	dir := stateDirTest(t, f)
	seedPeers(t, dir, "alice", "bob", "carol")
	if code, out := runCmd("peers", "remove", "-config", f, "nobody"); code != exitFailure || !strings.Contains(out, "no peer matches") {
		t.Errorf("no match: exit %d\n%s", code, out)
	}
	if code, out := runCmd("peers", "remove", "-config", f, "bob"); code != exitOK || !strings.Contains(out, "removed bob") || !strings.Contains(out, "edited directly") {
		t.Fatalf("by identity: exit %d\n%s", code, out)
	}
	if code, out := runCmd("peers", "remove", "-config", f, "100.96.0.4"); code != exitOK || !strings.Contains(out, "removed carol") {
		t.Fatalf("by address: exit %d\n%s", code, out)
	}
	l, err := vpn.ListPeers(context.Background(), filepath.Join(dir, "vpn"), "")
	if err != nil || len(l.Peers) != 1 || l.Peers[0].Identity != "alice" {
		t.Fatalf("left: %+v %v", l, err)
	}
}

// TestPeersEmptyRegistry: before anyone enrolled there is no registry
// directory; `gatehouse peers` says 0 peers.
func TestPeersEmptyRegistry(t *testing.T) {
	f := writeConfig(t, nil)
	old := uapiDir
	uapiDir = t.TempDir()
	t.Cleanup(func() { uapiDir = old })
	if code, out := runCmd("peers", "-config", f); code != exitOK || !strings.Contains(out, "0 peers (0 suspended)") {
		t.Errorf("exit %d\n%s", code, out)
	}
}
