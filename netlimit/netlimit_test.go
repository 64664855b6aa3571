package netlimit

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// server accepts through a capped listener, greets every accepted
// connection with "ok\n" and holds it open until the test closes it.
type server struct {
	l    *Listener
	mu   sync.Mutex
	held []net.Conn
	done chan struct{}
}

func startServer(t *testing.T, cfg Config) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{l: Wrap(ln, cfg), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := s.l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("ok\n"))
			s.mu.Lock()
			s.held = append(s.held, c)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		s.l.Close()
		<-s.done
		s.mu.Lock()
		for _, c := range s.held {
			c.Close()
		}
		s.mu.Unlock()
	})
	return s
}

// dial connects from source address from and reports whether the server
// accepted (greeted) the connection; a refused one is closed at once.
func dial(t *testing.T, s *server, from string) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", s.l.Addr().String())
	if err != nil {
		return nil, false // reset by the listener before connect returned
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 3)
	if _, err := io.ReadFull(c, buf); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("from %s: neither greeted nor closed", from)
		}
		return c, false
	}
	return c, string(buf) == "ok\n"
}

func TestCaps(t *testing.T) {
	s := startServer(t, Config{MaxConns: 3, MaxConnsPerIP: 2})
	_, ok1 := dial(t, s, "127.0.0.1")
	_, ok2 := dial(t, s, "127.0.0.1")
	if !ok1 || !ok2 {
		t.Fatal("connections within the caps refused")
	}
	if _, ok := dial(t, s, "127.0.0.1"); ok {
		t.Fatal("third connection from 127.0.0.1 accepted over the per-IP cap of 2")
	}
	if _, ok := dial(t, s, "127.0.0.2"); !ok {
		t.Fatal("another source refused while one source holds its cap")
	}
	if _, ok := dial(t, s, "127.0.0.3"); ok {
		t.Fatal("fourth connection accepted over the total cap of 3")
	}
	if got := s.l.Rejected(); got != 2 {
		t.Errorf("Rejected() = %d, want 2", got)
	}
	// Closing a held connection on the server side frees its places.
	s.mu.Lock()
	first := s.held[0]
	s.mu.Unlock()
	first.Close()
	first.Close() // a second close frees nothing more
	if n := s.l.Open(); n != 2 {
		t.Fatalf("Open() = %d after one close, want 2", n)
	}
	if _, ok := dial(t, s, "127.0.0.3"); !ok {
		t.Fatal("refused after a place was freed")
	}
	if _, ok := dial(t, s, "127.0.0.1"); ok {
		t.Fatal("over the total cap again, yet accepted")
	}
}

func TestUnlimited(t *testing.T) {
	s := startServer(t, Config{})
	for range 20 {
		if _, ok := dial(t, s, "127.0.0.1"); !ok {
			t.Fatal("refused with no caps")
		}
	}
	if s.l.Open() != 20 || s.l.Rejected() != 0 {
		t.Fatalf("open %d rejected %d", s.l.Open(), s.l.Rejected())
	}
}

func TestSource(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want string
	}{
		{"192.0.2.7:443", "192.0.2.7/32"},
		{"[::ffff:192.0.2.7]:443", "192.0.2.7/32"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:1", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:1", "fe80::/64"},
	} {
		ap := netip.MustParseAddrPort(tc.addr)
		got := source(net.TCPAddrFromAddrPort(ap))
		if got.String() != tc.want {
			t.Errorf("source(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
	if got := source(&net.UnixAddr{Name: "/x", Net: "unix"}); got.IsValid() {
		t.Errorf("unix socket: %v, want no per-IP key", got)
	}
}

func TestWithDefaults(t *testing.T) {
	def := Config{MaxConns: 64, MaxConnsPerIP: 8}
	for _, tc := range []struct{ in, want Config }{
		{Config{}, def},
		{Config{MaxConns: 10}, Config{MaxConns: 10, MaxConnsPerIP: 8}},
		{Config{MaxConns: -1, MaxConnsPerIP: -1}, Config{}},
	} {
		if got := tc.in.WithDefaults(def); got != tc.want {
			t.Errorf("%+v.WithDefaults = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	var nl *Listener
	if nl.Stats() != (Stats{}) {
		t.Error("nil listener has stats")
	}
}
