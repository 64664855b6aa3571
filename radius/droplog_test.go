package radius

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"

	"github.com/gatehouse/gatehouse/radius/radbench"
)

// jsonLogServer runs a server logging JSON at debug level into lb.
func jsonLogServer(t *testing.T, lb *logBuf, mod func(*Config)) *testServer {
	t.Helper()
	return startServerWith(t, func(s *Server) {
		s.log = slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}, mod)
}

// dialFrom is a UDP socket bound to local, connected to to.
func dialFrom(t *testing.T, local string, to net.Addr) *net.UDPConn {
	t.Helper()
	la, err := net.ResolveUDPAddr("udp", local)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", la, to.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sendFrom sends n datagrams made by mk from a socket bound to local.
func sendFrom(t *testing.T, local string, to net.Addr, n int, mk func(i int) []byte) {
	t.Helper()
	c := dialFrom(t, local, to)
	defer c.Close()
	for i := range n {
		if _, err := c.Write(mk(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// records returns every JSON record with the given msg.
func (l *logBuf) msgs(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestDropWarnings: a wrong shared secret and an unconfigured access point
// are findable in the log — a WARN naming the source, the matched client
// and the reason — yet 1,000 such packets write at most a couple of lines;
// the drop counter carries the client. Requests rejected before any
// conversation exists (no EAP) are rate-limited the same way.
func TestDropWarnings(t *testing.T) {
	lb := &logBuf{}
	s := jsonLogServer(t, lb, func(c *Config) {
		c.Clients = []ClientConfig{{Name: "ap-lobby", Network: "127.0.0.1/32", Secret: testSecret}}
	})
	const n = 1000
	mkReq := func(secret string, withEAP bool) func(int) []byte {
		return func(i int) []byte {
			p := layeh.New(layeh.CodeAccessRequest, []byte(secret))
			p.Identifier = byte(i)
			rfc2865.UserName_SetString(p, fmt.Sprintf("u%d", i))
			if withEAP {
				p.Add(79, []byte{2, 1, 0, 6, 1, 'x'})
			}
			b, err := radbench.EncodeRequest(p)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	sendFrom(t, "127.0.0.1:0", s.Addr(), n, mkReq("wrong-secret", true)) // wrong secret
	sendFrom(t, "127.0.0.3:0", s.Addr(), n, mkReq(testSecret, true))     // not a client
	sendFrom(t, "127.0.0.1:0", s.Addr(), n, mkReq(testSecret, false))    // no EAP: Reject
	t0 := time.Now()
	waitFor(t, "all packets handled", func() bool {
		st := s.Stats()
		ok := st.Drops[DropBadMA] == n && st.Drops[DropUnknownClient] == n && st.Rejects == n
		if !ok && (st.Drops[DropOverload] > 0 || time.Since(t0) > 10*time.Second) {
			t.Fatalf("packets lost: %+v", st)
		}
		return ok
	})
	t.Logf("%v", lb.msgs("radius: receive buffer"))
	st := s.Stats()
	if got := st.DropsByClient["ap-lobby"][DropBadMA]; got != n {
		t.Errorf("DropsByClient[ap-lobby][%s] = %d, want %d (%v)", DropBadMA, got, n, st.DropsByClient)
	}
	warns := lb.msgs("radius: dropped")
	byReason := map[string][]map[string]any{}
	for _, w := range warns {
		if w["level"] != "WARN" {
			t.Errorf("level %v", w["level"])
		}
		r, _ := w["reason"].(string)
		byReason[r] = append(byReason[r], w)
	}
	for _, c := range []struct{ reason, client, src string }{
		{DropBadMA, "ap-lobby", "127.0.0.1:"},
		{DropUnknownClient, "", "127.0.0.3:"},
	} {
		ws := byReason[c.reason]
		if len(ws) < 1 || len(ws) > 2 {
			t.Errorf("%s: %d log lines for %d drops, want 1 or 2", c.reason, len(ws), n)
			continue
		}
		w := ws[0]
		src, _ := w["src"].(string)
		if !strings.HasPrefix(src, c.src) || w["client"] != c.client || w["hint"] == "" {
			t.Errorf("%s: line %v", c.reason, w)
		}
	}
	if len(warns) > 4 {
		t.Errorf("%d drop lines for %d bad packets", len(warns), 2*n)
	}
	if rj := lb.msgs("radius: reject"); len(rj) < 1 || len(rj) > 2 {
		t.Errorf("%d reject lines for %d requests without EAP, want 1 or 2", len(rj), n)
	} else if rj[0]["nas"] != "ap-lobby" || !strings.HasPrefix(rj[0]["src"].(string), "127.0.0.1:") {
		t.Errorf("reject line %v", rj[0])
	}
	assertNoAddressObjects(t, lb)
}

// assertNoAddressObjects fails if any JSON log line carries an object
// (slog renders a *net.UDPAddr as {"IP":…,"Port":…,"Zone":…}).
func assertNoAddressObjects(t *testing.T, lb *logBuf) {
	t.Helper()
	lb.mu.Lock()
	defer lb.mu.Unlock()
	lines := 0
	for _, line := range strings.Split(lb.buf.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		lines++
		for k, v := range m {
			if _, ok := v.(map[string]any); ok {
				t.Errorf("log line has an object in %q: %s", k, line)
			}
		}
	}
	if lines == 0 {
		t.Error("no log lines")
	}
}

// TestLogAddressesAreStrings: the addresses in the radius server's JSON
// log lines (listening, drops, rejects, send errors, shutdown) are strings.
func TestLogAddressesAreStrings(t *testing.T) {
	lb := &logBuf{}
	func() {
		s := jsonLogServer(t, lb, nil)
		sendFrom(t, "127.0.0.1:0", s.Addr(), 1, func(int) []byte { return []byte("junk that is no RADIUS packet") })
		waitFor(t, "drop", func() bool { return s.Stats().Drops[DropMalformed] == 1 })
	}()
	if l := lb.msgs("radius: listening"); len(l) != 1 {
		t.Fatalf("listening lines: %v", l)
	} else if a, ok := l[0]["auth"].(string); !ok || !strings.HasPrefix(a, "127.0.0.1:") {
		t.Errorf("listening: auth = %#v", l[0]["auth"])
	}
	assertNoAddressObjects(t, lb)
}

// TestDropHintsPerTransport: the hint of a logged drop fits the transport.
// A UDP access point with the wrong secret is told to fix its
// [[radius.client]] secret; a RadSec peer signing with anything but
// "radsec" is told that the RadSec secret is always "radsec" and that its
// entry is a [[radius.radsec_client]] (which has no secret to change).
func TestDropHintsPerTransport(t *testing.T) {
	s := startRadSec(t, nil)
	// UDP, wrong secret: an Access-Request and an Accounting-Request.
	wrong := []byte("wrong-secret")
	sendFrom(t, "127.0.0.1:0", s.Addr(), 1, func(int) []byte { return identityRequestSecret(t, wrong) })
	sendFrom(t, "127.0.0.1:0", s.AcctAddr(), 1, func(int) []byte {
		return acctSpec{status: 1, session: "h", nasID: "ap"}.encode(t, wrong)
	})
	// RadSec, a peer configured with a secret other than "radsec".
	rc := s.mustDial(t, &s.rs.ap)
	rc.write(identityRequestSecret(t, wrong))
	waitFor(t, "the drops", func() bool {
		d := s.Stats().DropsByClient
		return d["lo"][DropBadMA] == 1 && d["lo"][DropBadAuthenticator] == 1 && d["aps"][DropBadMA] == 1
	})
	// Accounting over RadSec: another reason, logged at once (own gate).
	rc.write(acctSpec{status: 1, session: "h", nasID: "ap"}.encode(t, wrong))
	waitFor(t, "the RadSec accounting drop", func() bool { return s.Stats().DropsByClient["aps"][DropBadAuthenticator] == 1 })

	lines := s.log.msgs("radius: dropped")
	hints := map[string]string{} // client/reason → hint
	for _, l := range lines {
		hints[l["client"].(string)+"/"+l["reason"].(string)], _ = l["hint"].(string)
	}
	for _, key := range []string{"lo/" + DropBadMA, "lo/" + DropBadAuthenticator} {
		h := hints[key]
		if !strings.Contains(h, "[[radius.client]]") || strings.Contains(h, "radsec") {
			t.Errorf("UDP drop %s: hint %q", key, h)
		}
	}
	for _, key := range []string{"aps/" + DropBadMA, "aps/" + DropBadAuthenticator} {
		h := hints[key]
		if !strings.Contains(h, "[[radius.radsec_client]]") || !strings.Contains(h, `"radsec"`) || strings.Contains(h, "[[radius.client]]") {
			t.Errorf("RadSec drop %s: hint %q", key, h)
		}
	}
	// Every hint of either transport names the right table, if any.
	for r := range numDrops {
		if strings.Contains(radsecDropHints[r], "[[radius.client]]") {
			t.Errorf("RadSec hint for %s names [[radius.client]]: %q", dropNames[r], radsecDropHints[r])
		}
		if strings.Contains(dropHints[r], "radsec") {
			t.Errorf("UDP hint for %s names RadSec: %q", dropNames[r], dropHints[r])
		}
	}
}

// identityRequestSecret is an Access-Request (EAP-Response/Identity, with
// a Message-Authenticator) signed with secret.
func identityRequestSecret(t *testing.T, secret []byte) []byte {
	t.Helper()
	p := layeh.New(layeh.CodeAccessRequest, secret)
	rfc2865.UserName_SetString(p, "x")
	p.Add(79, []byte{2, 1, 0, 6, 1, 'x'})
	b, err := radbench.EncodeRequest(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
