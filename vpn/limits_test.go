package vpn

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// dialFrom opens a TCP connection to addr from source address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refused reports whether a connection from src is closed at once: reset
// while connecting, or read ends at once without a timeout.
func refused(t *testing.T, src, addr string) bool {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return true // reset before connect returned
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	return err != nil && !isTimeout(err)
}

// waitOpen waits (bounded) until the enrollment listener holds n connections.
func waitOpen(t *testing.T, srv *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for srv.EnrollListener().Open != n {
		if time.Now().After(deadline) {
			t.Fatalf("enrollment listener holds %d connections, want %d", srv.EnrollListener().Open, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestEnrollConnectionCaps holds idle TCP connections open against the
// enrollment API: one source cannot hold more than its cap (the next is
// closed at once and counted), another source still enrolls, and no source
// gets past the total.
func TestEnrollConnectionCaps(t *testing.T) {
	ca := newTestCA(t)
	auth := &fakeAuth{}
	auth.set("alice", allow("engineering", engineeringAccess))
	env := startServer(t, auth, ca, t.TempDir(), func(c *Config) {
		c.EnrollMaxConns = 5
		c.EnrollMaxConnsPerIP = 3
	})
	addr := env.srv.EnrollAddr().String()
	for range 3 {
		dialFrom(t, "127.0.0.1", addr) // idle: no TLS handshake
	}
	waitOpen(t, env.srv, 3)

	if !refused(t, "127.0.0.1", addr) {
		t.Fatal("4th connection from 127.0.0.1 not closed at once")
	}
	if got := env.srv.EnrollListener().Rejected; got != 1 {
		t.Fatalf("rejected = %d, want 1", got)
	}

	// Another source enrolls while 127.0.0.1 holds its cap.
	alice := ca.issue(t, "alice", false)
	hc := fromSource(ca.httpClient(alice), "127.0.0.2")
	hc.Transport.(*http.Transport).DisableKeepAlives = true
	resp, err := hc.Post(env.url()+"/v1/enroll", "application/json", strings.NewReader(keyBody(newPub(t))))
	if err != nil {
		t.Fatalf("enroll from 127.0.0.2 while 127.0.0.1 holds its cap: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("enroll from 127.0.0.2: %d %s", resp.StatusCode, body)
	}
	waitOpen(t, env.srv, 3)

	// The total: two more from other sources fill it; the next is refused.
	dialFrom(t, "127.0.0.3", addr)
	dialFrom(t, "127.0.0.4", addr)
	waitOpen(t, env.srv, 5)
	if !refused(t, "127.0.0.5", addr) {
		t.Fatal("connection over the total not closed at once")
	}
	if got := env.srv.EnrollListener().Rejected; got != 2 {
		t.Fatalf("rejected = %d, want 2", got)
	}
}

// fromSource makes hc's connections come from source address ip.
func fromSource(hc *http.Client, ip string) *http.Client {
	hc.Transport.(*http.Transport).DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext
	return hc
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestEnrollCapsDefaults(t *testing.T) {
	c := validConfig()
	s, err := c.validate()
	if err != nil {
		t.Fatal(err)
	}
	if s.enrollCaps.MaxConns != DefaultEnrollMaxConns || s.enrollCaps.MaxConnsPerIP != DefaultEnrollMaxConnsPerIP {
		t.Errorf("defaults %+v", s.enrollCaps)
	}
	c.EnrollMaxConns, c.EnrollMaxConnsPerIP = -1, -1
	if s, _ = c.validate(); s.enrollCaps.MaxConns != 0 || s.enrollCaps.MaxConnsPerIP != 0 {
		t.Errorf("negative = no cap: %+v", s.enrollCaps)
	}
}
