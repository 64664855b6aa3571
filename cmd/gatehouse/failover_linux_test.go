package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy/policytest"
	"github.com/gatehouse/gatehouse/store/pgtest"
)

func waitLong(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out (%v) waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHostapdFailover: two gatehouse nodes share one PostgreSQL; a real
// access point (hostapd, driver=wired) has both as RADIUS servers — node A
// first for authentication, node B first for accounting — and
// wpa_supplicant is the station (in a network namespace).
//
//  1. The station authenticates through A; its accounting goes to B, which
//     finds the session A accepted in PostgreSQL and adopts it. A policy
//     change on B disconnects it: B, the node that received the
//     accounting, sends the Disconnect-Request to hostapd, which drops the
//     station.
//  2. The policy is restored, node A is stopped; the station
//     re-authenticates, hostapd fails over (no answer from A) and the
//     station is accepted through node B.
//  3. Another policy change: node B disconnects the station again.
func TestHostapdFailover(t *testing.T) {
	policytest.RequireInterop(t, runtime.GOOS == "linux" && os.Geteuid() == 0, "needs root for a veth pair and a network namespace")
	if testing.Short() {
		t.Skip("over a minute: hostapd fails over after four unanswered retransmissions (3+6+12+24 s)")
	}
	hostapd := policytest.RequireTool(t, "hostapd")
	policytest.RequireTool(t, "wpa_supplicant")
	wpaCli := policytest.RequireTool(t, "wpa_cli")
	policytest.RequireTool(t, "ip")
	pg := pgtest.Start(t)
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	os.WriteFile(dsnFile, []byte(pg.CreateDatabase("gh_failover")), 0o600)

	a, b, ns := wiredVeth(t, "f")

	das := freeUDPPort(t)
	type node struct {
		name       string
		auth, acct int
		file       string
		srv        *served
	}
	nodes := []*node{{name: "node-a"}, {name: "node-b"}}
	for _, n := range nodes {
		n.auth, n.acct = freeUDPPort(t), freeUDPPort(t)
		n.file = writeConfig(t, func(s string) string {
			s = replace(`listen = "127.0.0.1:1812"`, fmt.Sprintf(`listen = "127.0.0.1:%d"`, n.auth))(s)
			s = replace(`accounting_listen = "127.0.0.1:1813"`, fmt.Sprintf(`accounting_listen = "127.0.0.1:%d"`, n.acct))(s)
			s = replace(`revalidate_every = "60s"`, `revalidate_every = "1h"`)(s) // only the reload re-validates
			s = replace(`log_level = "info"`, `log_level = "debug"`)(s)
			s = replace(`coa_port = 3799`, fmt.Sprintf(`coa_port = %d`, das))(s)
			return withStore(fmt.Sprintf("backend = \"postgres\"\ndsn_file = %q\nnode = %q", dsnFile, n.name))(s)
		})
	}
	A, B := nodes[0], nodes[1]
	A.srv = startServe(t, A.file, nil)
	B.srv = startServe(t, B.file, nil)

	dir := t.TempDir()
	hconf := writeHostapdConf(dir, a, []int{A.auth, B.auth}, []int{B.acct, A.acct}, das)
	ctrl := filepath.Join(dir, "wpa-ctrl")
	sconf := writeSupplicantConf(dir, ctrl)
	w := startWired(t, hostapd, []string{"-t"}, hconf, ns, b, sconf)
	hlog, wlog := &w.hlog, &w.wlog
	cli := func(args ...string) string {
		out, _ := exec.Command("ip", append([]string{"netns", "exec", ns, wpaCli, "-p", ctrl, "-i", b}, args...)...).CombinedOutput()
		return string(out)
	}
	count := func(l *policytest.SyncBuffer, sub string) int { return strings.Count(l.String(), sub) }

	// 1. Accepted by A, accounting to B, B adopts it.
	waitLong(t, "802.1X success through node A", 30*time.Second, func() bool {
		return strings.Contains(wlog.String(), "CTRL-EVENT-EAP-SUCCESS") && strings.Contains(A.srv.logs.String(), "radius: accept")
	})
	waitLong(t, "node B to adopt the session from its accounting", 30*time.Second, func() bool {
		return strings.Contains(B.srv.logs.String(), "adopted a Wi-Fi session accepted by another node")
	})
	if strings.Contains(B.srv.logs.String(), "radius: accept") {
		t.Fatal("node B accepted the first login; hostapd should have used node A")
	}
	// The policy changes (on B, which re-validates its sessions): B
	// disconnects the station through hostapd.
	edit := func(n *node, from, to string) {
		b, _ := os.ReadFile(n.file)
		tmp := n.file + ".new"
		os.WriteFile(tmp, []byte(replace(from, to)(string(b))), 0o600)
		os.Rename(tmp, n.file)
	}
	reloads := count(B.srv.logs, "policy reloaded")
	edit(B, `groups = ["cn=engineering,ou=groups,dc=example,dc=com"]`, `groups = ["cn=nobody,ou=groups,dc=example,dc=com"]`)
	waitLong(t, "hostapd to drop the station on node B's Disconnect", 30*time.Second, func() bool {
		return strings.Contains(hlog.String(), "AP-STA-DISCONNECTED")
	})
	waitLong(t, "node B's Disconnect-ACK", 10*time.Second, func() bool {
		l := B.srv.logs.String()
		return strings.Contains(l, "event=disconnect") && strings.Contains(l, "result=ack")
	})
	if strings.Contains(A.srv.logs.String(), "event=disconnect") {
		t.Error("node A sent a Disconnect: only the node that received the accounting should")
	}

	// 2. Policy restored, node A stops: the station re-authenticates
	// through node B after hostapd's failover.
	edit(B, `groups = ["cn=nobody,ou=groups,dc=example,dc=com"]`, `groups = ["cn=engineering,ou=groups,dc=example,dc=com"]`)
	waitLong(t, "node B's policy restored", 20*time.Second, func() bool { return count(B.srv.logs, "policy reloaded") >= reloads+2 })
	// hostapd removes the disconnected station a few seconds later (and
	// with it any authentication under way): wait for that, then log in
	// again through node A, so that the failover starts from a station in
	// good standing.
	waitLong(t, "hostapd to remove the disconnected station", 30*time.Second, func() bool {
		return strings.Contains(hlog.String(), "deauthenticated due to local deauth request")
	})
	cli("SET", "EAPOL::heldPeriod", "2")
	cli("SET", "EAPOL::authPeriod", "120") // wait for hostapd's failover, not restart the conversation
	successes := count(wlog, "CTRL-EVENT-EAP-SUCCESS")
	acceptsA := count(A.srv.logs, "radius: accept")
	cli("reauthenticate")
	waitLong(t, "the station accepted through node A again", 30*time.Second, func() bool {
		return count(wlog, "CTRL-EVENT-EAP-SUCCESS") > successes && count(A.srv.logs, "radius: accept") > acceptsA
	})
	if code := A.srv.stop(); code != exitOK {
		t.Fatalf("node A exited %d", code)
	}
	stopped := time.Now()
	successes = count(wlog, "CTRL-EVENT-EAP-SUCCESS")
	defer func() {
		if t.Failed() {
			t.Logf("hostapd:\n%s\nwpa_supplicant:\n%s\nnode B:\n%s", tailN(hlog.String(), 6000), tailN(wlog.String(), 3000), tailN(B.srv.logs.String(), 3000))
		}
	}()
	// One re-authentication: hostapd retransmits its Access-Request to
	// node A (3 s, then doubling) and fails over to node B after four
	// unanswered attempts, re-sending the pending request there.
	cli("reauthenticate")
	waitLong(t, "the station accepted through node B", 100*time.Second, func() bool {
		return count(wlog, "CTRL-EVENT-EAP-SUCCESS") > successes && strings.Contains(B.srv.logs.String(), "radius: accept")
	})
	t.Logf("node A stopped to the station accepted through node B: %v (hostapd's RADIUS failover)", time.Since(stopped))
	if p := os.Getenv("GATEHOUSE_FAILOVER_LOG"); p != "" {
		os.WriteFile(p, []byte(hlog.String()+"\n=== wpa_supplicant\n"+wlog.String()), 0o644)
	}
	if !strings.Contains(hlog.String(), "failover") {
		t.Logf("hostapd log does not mention the failover:\n%s", tail(hlog.String()))
	}
	// 3. The policy changes again: node B, which accepted this login and
	// receives its accounting, disconnects it.
	waitLong(t, "node B to link the new session's accounting", 30*time.Second, func() bool {
		return count(B.srv.logs, "linked_by=class") >= 1
	})
	drops := count(hlog, "AP-STA-DISCONNECTED")
	edit(B, `groups = ["cn=engineering,ou=groups,dc=example,dc=com"]`, `groups = ["cn=nobody,ou=groups,dc=example,dc=com"]`)
	waitLong(t, "hostapd to drop the station again", 30*time.Second, func() bool {
		return count(hlog, "AP-STA-DISCONNECTED") > drops
	})
	w.stop()
	B.srv.stopClean(t)
}

func tailN(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
