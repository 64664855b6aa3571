package main

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

var reClass = regexp.MustCompile(`Attribute 25 \(Class\) length=\d+\s+Value: ([0-9a-f]+)`)

// disconnectListener is a minimal NAS dynamic authorization port: it
// checks each Disconnect-Request's Request Authenticator and first-attribute
// Message-Authenticator and answers Disconnect-ACK.
type disconnectListener struct {
	conn *net.UDPConn
	got  chan disconnectReq
}

type disconnectReq struct {
	at    time.Time
	attrs map[byte]string
}

func newDisconnectListener(t *testing.T, secret string) *disconnectListener {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	l := &disconnectListener{conn: c, got: make(chan disconnectReq, 16)}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			at := time.Now()
			b := buf[:n]
			if n < 38 || b[0] != 40 || b[20] != 80 || b[21] != 18 {
				continue
			}
			z := append([]byte(nil), b...)
			clear(z[4:20])
			m := md5.New()
			m.Write(z[:20])
			m.Write(b[20:])
			m.Write([]byte(secret))
			clear(z[22:38])
			h := hmac.New(md5.New, []byte(secret))
			h.Write(z)
			if !hmac.Equal(m.Sum(nil), b[4:20]) || !hmac.Equal(h.Sum(nil), b[22:38]) {
				continue
			}
			attrs := map[byte]string{}
			for a := b[20:]; len(a) >= 2 && int(a[1]) >= 2 && int(a[1]) <= len(a); a = a[a[1]:] {
				attrs[a[0]] = string(a[2:a[1]])
			}
			l.got <- disconnectReq{at, attrs}
			ack := append([]byte{41, b[1], 0, 20}, b[4:20]...)
			rm := md5.New()
			rm.Write(ack)
			rm.Write([]byte(secret))
			copy(ack[4:20], rm.Sum(nil))
			c.WriteToUDPAddrPort(ack, from)
		}
	}()
	return l
}

func (l *disconnectListener) port() int { return l.conn.LocalAddr().(*net.UDPAddr).Port }

// TestServeRevocationDisconnect: alice joins Wi-Fi with eapol_test, her
// access point (radclient) sends Accounting-Start echoing the Class
// attributes, then the policy is edited so that no rule admits her; the
// reload re-validates live sessions and her access point receives a
// Disconnect-Request for her session. The time from the policy file's
// rename to the Disconnect-Request is logged.
func TestServeRevocationDisconnect(t *testing.T) {
	bin := policytest.RequireTool(t, "eapol_test")
	rc := policytest.RequireTool(t, "radclient")
	nas := newDisconnectListener(t, "testing123")
	auth, acct := freeUDPPort(t), freeUDPPort(t)
	f := writeConfig(t, func(s string) string {
		s = replace(`listen = "127.0.0.1:1812"`, fmt.Sprintf(`listen = "127.0.0.1:%d"`, auth))(s)
		s = replace(`accounting_listen = "127.0.0.1:1813"`, fmt.Sprintf(`accounting_listen = "127.0.0.1:%d"`, acct))(s)
		s = replace(`revalidate_every = "60s"`, `revalidate_every = "1h"`)(s) // only the reload re-validates
		return replace(`coa_port = 3799`, fmt.Sprintf(`coa_port = %d`, nas.port()))(s)
	})
	srv := startServe(t, f, nil)
	logs := srv.logs

	out, err := eapolTest(t, bin, auth, "alice", true)
	cls := reClass.FindAllStringSubmatch(out, -1)
	if err != nil || len(cls) < 2 {
		t.Fatalf("eapol_test: %v; Class attributes %v\n%s", err, cls, tail(out))
	}
	var acctAttrs strings.Builder
	acctAttrs.WriteString("Acct-Status-Type = Start\nAcct-Session-Id = \"E2E-0001\"\nUser-Name = \"alice@corp.example.com\"\n")
	acctAttrs.WriteString("Calling-Station-Id = \"02-00-00-00-00-01\"\nNAS-IP-Address = 127.0.0.1\nFramed-IP-Address = 10.10.0.9\n")
	for _, m := range cls[len(cls)-2:] { // the final Access-Accept's
		acctAttrs.WriteString("Class = 0x" + m[1] + "\n")
	}
	rcCtx, rcCancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer rcCancel()
	c := exec.CommandContext(rcCtx, rc, "-x", "-r", "1", "-t", "2", fmt.Sprintf("127.0.0.1:%d", acct), "acct", "testing123")
	c.Stdin = strings.NewReader(acctAttrs.String())
	if o, err := c.CombinedOutput(); err != nil || !strings.Contains(string(o), "Received Accounting-Response") {
		t.Fatalf("radclient: %v\n%s", err, o)
	}

	// Alice's group no longer has a rule.
	b, _ := os.ReadFile(f)
	tmp := f + ".new"
	os.WriteFile(tmp, []byte(replace(`groups = ["cn=engineering,ou=groups,dc=example,dc=com"]`, `groups = ["cn=nobody,ou=groups,dc=example,dc=com"]`)(string(b))), 0o600)
	changed := time.Now()
	os.Rename(tmp, f)
	var r disconnectReq
	select {
	case r = <-nas.got:
	case <-time.After(15 * time.Second):
		t.Fatalf("no Disconnect-Request\n%s", tail(logs.String()))
	}
	t.Logf("policy edit to Disconnect-Request: %v (file watcher and reload included)", r.at.Sub(changed))
	if r.attrs[44] != "E2E-0001" || r.attrs[31] != "02-00-00-00-00-01" || r.attrs[1] != "alice@corp.example.com" {
		t.Errorf("Disconnect-Request attributes %q", r.attrs)
	}
	if ts := r.attrs[55]; len(ts) != 4 || time.Since(time.Unix(int64(binary.BigEndian.Uint32([]byte(ts))), 0)) > time.Minute {
		t.Errorf("Event-Timestamp %x", ts)
	}
	waitFor(t, "disconnect log", func() bool {
		return strings.Contains(logs.String(), "event=disconnect") && strings.Contains(logs.String(), "result=ack")
	})
	if strings.Contains(logs.String(), "testing123") || strings.Contains(logs.String(), hex.EncodeToString([]byte("testing123"))) {
		t.Error("the shared secret reached the log")
	}
	srv.stopClean(t)
}
