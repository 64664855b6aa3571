package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/policytest"
	"github.com/gatehouse/gatehouse/vpn"
)

// liveServe is `gatehouse serve` in process with the VPN on netstack, a
// Wi-Fi access point's Disconnect port (nas) and the servers at hand.
type liveServe struct {
	*served
	f        string // the config file
	ldif     string // the directory's LDIF file (a copy)
	s        *servers
	nas      *disconnectListener
	hup      chan os.Signal
	eapol    string
	radclnt  string
	auth     int // RADIUS ports
	acct     int
	sessions int
}

// startLiveServe writes the shipped config with the VPN enabled, its own
// copy of the LDIF directory, nothing re-validated but by reloads, and
// runs serve on it; fast shortens the reloader's poll and settle intervals
// (else they are the production ones); edit, if not nil, edits the config
// further.
func startLiveServe(t *testing.T, fast bool, edit func(string) string) *liveServe {
	t.Helper()
	ls := &liveServe{
		eapol:   policytest.RequireTool(t, "eapol_test"),
		radclnt: policytest.RequireTool(t, "radclient"),
		nas:     newDisconnectListener(t, "testing123"),
		hup:     make(chan os.Signal, 1),
		auth:    freeUDPPort(t),
		acct:    freeUDPPort(t),
	}
	ls.ldif = filepath.Join(t.TempDir(), "directory.ldif")
	b, err := os.ReadFile("../../testdata/directory/example.ldif")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, ls.ldif, b)
	ls.f = writeConfig(t, func(s string) string {
		s = replace(`listen = "127.0.0.1:1812"`, fmt.Sprintf(`listen = "127.0.0.1:%d"`, ls.auth))(s)
		s = replace(`accounting_listen = "127.0.0.1:1813"`, fmt.Sprintf(`accounting_listen = "127.0.0.1:%d"`, ls.acct))(s)
		s = strings.ReplaceAll(s, `revalidate_every = "60s"`, `revalidate_every = "1h"`) // only reloads re-validate
		s = replace(`coa_port = 3799`, fmt.Sprintf(`coa_port = %d`, ls.nas.port()))(s)
		s = replace(`enabled = false`, `enabled = true`)(s)
		s = replace(`listen_port = 51820`, fmt.Sprintf(`listen_port = %d`, freeUDPPort(t)))(s)
		s = replace(`enroll_listen = "127.0.0.1:8443"`, `enroll_listen = "127.0.0.1:0"`)(s)
		root, _ := filepath.Abs("../..")
		s = replace(`file = "`+root+`/testdata/directory/example.ldif"`, `file = "`+ls.ldif+`"`)(s)
		if edit != nil {
			s = edit(s)
		}
		return s
	})
	l, err := loadConfig(ls.f)
	if err != nil {
		t.Fatal(err)
	}
	built := make(chan *servers, 1)
	opts := serveOptions{netstack: true, hup: ls.hup, built: func(s *servers) { built <- s }}
	if fast {
		opts.every, opts.settle = 100*time.Millisecond, 200*time.Millisecond
	}
	srv := &served{logs: &policytest.SyncBuffer{}, before: runtime.NumGoroutine(), done: make(chan int, 1)}
	var ctx context.Context
	ctx, srv.cancel = context.WithCancel(context.Background())
	go func() {
		code := exitOK
		if err := serve(ctx, l, srv.logs, srv.logs, opts); err != nil {
			fmt.Fprintln(srv.logs, "serve:", err)
			code = exitFailure
		}
		srv.done <- code
	}()
	t.Cleanup(func() { srv.stop() })
	ls.served = srv
	select {
	case ls.s = <-built:
	case <-time.After(10 * time.Second):
		t.Fatalf("serve did not start\n%s", srv.logs)
	}
	select {
	case <-ls.s.vpn.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("vpn not ready\n%s", srv.logs)
	}
	waitFor(t, "radius listening", func() bool { return strings.Contains(srv.logs.String(), "radius: listening") })
	return ls
}

// enroll enrolls a new key for cert's holder over mutual TLS.
func (ls *liveServe) enroll(t *testing.T, cert string) {
	t.Helper()
	pki := "../../testdata/pki/"
	c, err := tls.LoadX509KeyPair(pki+cert+"-chain.pem", pki+cert+".key")
	if err != nil {
		c, err = tls.LoadX509KeyPair(pki+cert+".pem", pki+cert+".key")
	}
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	ca, _ := policy.ReadCertificates(pki + "server-ca.pem")
	roots.AddCert(ca[0])
	tr := &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{c}, RootCAs: roots, ServerName: "gatehouse.test"}}
	defer tr.CloseIdleConnections()
	k, err := vpn.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Post("https://"+ls.s.vpn.EnrollAddr().String()+"/v1/enroll",
		"application/json", strings.NewReader(`{"public_key":"`+k.Public().String()+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("enroll %s: %d %s", cert, resp.StatusCode, body)
	}
}

// wifi joins Wi-Fi as cert with eapol_test and starts accounting for the
// session as its access point would (echoing the Class attributes), so the
// session is live and known to re-validation.
func (ls *liveServe) wifi(t *testing.T, cert, user string) {
	t.Helper()
	out, err := eapolTest(t, ls.eapol, ls.auth, cert, true)
	cls := reClass.FindAllStringSubmatch(out, -1)
	if err != nil || len(cls) < 2 {
		t.Fatalf("eapol_test: %v; Class attributes %v\n%s", err, cls, tail(out))
	}
	ls.sessions++
	var a strings.Builder
	fmt.Fprintf(&a, "Acct-Status-Type = Start\nAcct-Session-Id = \"LIVE-%04d\"\nUser-Name = %q\n", ls.sessions, user)
	fmt.Fprintf(&a, "Calling-Station-Id = \"02-00-00-00-00-%02x\"\nNAS-IP-Address = 127.0.0.1\n", ls.sessions)
	for _, m := range cls[len(cls)-2:] { // the final Access-Accept's
		a.WriteString("Class = 0x" + m[1] + "\n")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, ls.radclnt, "-x", "-r", "1", "-t", "2", fmt.Sprintf("127.0.0.1:%d", ls.acct), "acct", "testing123")
	c.Stdin = strings.NewReader(a.String())
	if o, err := c.CombinedOutput(); err != nil || !strings.Contains(string(o), "Received Accounting-Response") {
		t.Fatalf("radclient: %v\n%s", err, o)
	}
	want := ls.sessions
	waitFor(t, "live Wi-Fi session", func() bool { _, live := ls.s.radius.WiFiSessions(); return live == want })
}

// access reports the VPN peers that have access (on the device) and the
// live Wi-Fi sessions.
func (ls *liveServe) access() (peers, wifi int) {
	_, wifi = ls.s.radius.WiFiSessions()
	return activePeers(ls.s.vpn.Stats()), wifi
}

// activePeers counts the peers on the device. (Where re-validation
// suspends instead of deleting, records stay: subtract the suspended.)
func activePeers(st vpn.Stats) int { return st.Peers - st.Suspended }

// outcomes counts the reloads done so far, refused or not.
func (ls *liveServe) outcomes() int {
	l := ls.logs.String()
	return strings.Count(l, "reload refused") + strings.Count(l, "policy reloaded")
}

// waitReload waits for a reload after the n-th, then for the re-validation
// that follows it, and returns the log.
func (ls *liveServe) waitReload(t *testing.T, n int) string {
	t.Helper()
	waitFor(t, "a reload", func() bool { return ls.outcomes() > n })
	time.Sleep(300 * time.Millisecond) // the re-validation after it
	return ls.logs.String()
}

// TestServeTruncatedReloadKeepsAccess (issue 10): a config file cut short
// and saved in place — before its rules, or between two rules — is refused
// at reload: every enrolled VPN peer and live Wi-Fi session stays, no
// Disconnect-Request is sent. The complete file saved next is loaded.
func TestServeTruncatedReloadKeepsAccess(t *testing.T) {
	ls := startLiveServe(t, true, nil)
	ls.enroll(t, "alice")
	ls.enroll(t, "bob")
	ls.wifi(t, "alice", "alice@corp.example.com")
	if p, w := ls.access(); p != 2 || w != 1 {
		t.Fatalf("before: %d peers, %d sessions", p, w)
	}
	full, _ := os.ReadFile(ls.f)
	s := string(full)
	for _, cut := range []struct{ name, text string }{
		{"before the rules", s[:strings.Index(s, "\n[[policy]]\n")+1]},
		{"after the first rule", s[:strings.Index(s, "\n[[policy]]\nname = \"engineering\"")+1]},
		{"mid-rule", s[:strings.Index(s, "vpn = { allow = [\"10.30")]},
	} {
		n := ls.outcomes()
		if err := os.WriteFile(ls.f, []byte(cut.text), 0o600); err != nil { // in place, as the incident's writer did
			t.Fatal(err)
		}
		if logs := ls.waitReload(t, n); strings.Count(logs, "policy reloaded") > 0 {
			t.Errorf("%s: the truncated file was loaded", cut.name)
		}
		if p, w := ls.access(); p != 2 || w != 1 {
			t.Fatalf("%s: %d peers, %d sessions after the reload; want 2 and 1\n%s", cut.name, p, w, tail(ls.logs.String()))
		}
	}
	// A SIGHUP with the truncated file in place changes nothing either.
	n := ls.outcomes()
	ls.hup <- syscall.SIGHUP
	if logs := ls.waitReload(t, n); strings.Count(logs, "policy reloaded") > 0 {
		t.Error("SIGHUP: the truncated file was loaded")
	}
	if p, w := ls.access(); p != 2 || w != 1 {
		t.Fatalf("SIGHUP: %d peers, %d sessions after the reload; want 2 and 1", p, w)
	}
	// The complete file (sales on VLAN 21) is loaded.
	n = ls.outcomes()
	writeFile(t, ls.f, []byte(replace(`vlan = "20"`, `vlan = "21"`)(s)))
	if logs := ls.waitReload(t, n); !strings.Contains(logs, "policy reloaded") {
		t.Fatalf("the complete file was not loaded\n%s", tail(logs))
	}
	if got := ls.s.auth.Policy().Summary().Rules; len(got) != 3 {
		t.Fatalf("rules after the complete file: %v", got)
	}
	if strings.Contains(ls.logs.String(), "take effect at restart") {
		t.Error("a warning about section changes, yet only a rule changed")
	}
	if p, w := ls.access(); p != 2 || w != 1 {
		t.Fatalf("after the complete file: %d peers, %d sessions", p, w)
	}
	select {
	case r := <-ls.nas.got:
		t.Fatalf("a Disconnect-Request was sent: %q", r.attrs)
	default:
	}
	ls.stopClean(t)
}

// TestServeGroupChangeReachesLiveAccess (issue 9 item 12): alice is
// removed from her group — in the LDIF file, or on the LDAP server while
// her groups are cached for cache_ttl (5 min) — and gatehouse is reloaded
// (SIGHUP; for the file, its change alone is a reload): her VPN peer is cut
// and her Wi-Fi session disconnected within 5 s; bob keeps his.
func TestServeGroupChangeReachesLiveAccess(t *testing.T) {
	for _, tt := range []struct {
		name    string
		ldap    bool
		trigger string
	}{
		{"file/SIGHUP", false, "SIGHUP"},
		{"file/file change", false, "file change"},
		{"ldap/SIGHUP", true, "SIGHUP"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var sl *slapd
			var edit func(string) string
			if tt.ldap {
				sl = startSlapd(t)
				edit = sl.configure
			}
			ls := startLiveServe(t, false, edit) // production reload timing
			ls.enroll(t, "alice")
			ls.enroll(t, "bob")
			ls.wifi(t, "alice", "alice@corp.example.com")
			if p, w := ls.access(); p != 2 || w != 1 {
				t.Fatalf("before: %d peers, %d sessions", p, w)
			}
			if tt.ldap {
				m := ldap.NewModifyRequest("cn=backend,ou=groups,dc=example,dc=com", nil)
				m.Replace("member", []string{"uid=frank,ou=people,dc=example,dc=com"})
				sl.modify(t, m)
			} else {
				b, _ := os.ReadFile(ls.ldif)
				edited := strings.Replace(string(b), "cn: backend\nmember: uid=alice,ou=people,dc=example,dc=com\n",
					"cn: backend\nmember: uid=frank,ou=people,dc=example,dc=com\n", 1)
				if edited == string(b) {
					t.Fatal("LDIF fixture changed: alice's membership not found")
				}
				writeFile(t, ls.ldif, []byte(edited))
			}
			start := time.Now()
			if tt.trigger == "SIGHUP" {
				ls.hup <- syscall.SIGHUP
			}
			select {
			case r := <-ls.nas.got:
				if r.attrs[1] != "alice@corp.example.com" {
					t.Errorf("Disconnect-Request for %q", r.attrs[1])
				}
				t.Logf("%s to Disconnect-Request: %v", tt.trigger, r.at.Sub(start))
				if d := r.at.Sub(start); d > 5*time.Second {
					t.Errorf("Disconnect-Request %v after the %s; want within 5 s", d, tt.trigger)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no Disconnect-Request within 5 s of the %s\n%s", tt.trigger, tail(ls.logs.String()))
			}
			for activePeers(ls.s.vpn.Stats()) != 1 {
				if time.Since(start) > 5*time.Second {
					t.Fatalf("alice's VPN peer not cut within 5 s of the %s: %+v", tt.trigger, ls.s.vpn.Stats())
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("%s to VPN peer cut: %v", tt.trigger, time.Since(start))
			ls.stopClean(t)
		})
	}
}
