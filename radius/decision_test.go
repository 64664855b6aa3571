package radius

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2868"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/radius/eap"
	"github.com/gatehouse/gatehouse/radius/radbench"
)

// blockingAuth is a directory that hangs: every Authorize waits for
// release (or its context) before deciding like fakeAuth.
type blockingAuth struct {
	*fakeAuth
	entered chan struct{} // one token per Authorize call
	release chan struct{} // closed: decisions go ahead
}

func newBlockingAuth(t testing.TB) *blockingAuth {
	return &blockingAuth{fakeAuth: newFakeAuth(getPKI(t)), entered: make(chan struct{}, 256), release: make(chan struct{})}
}

func (a *blockingAuth) Authorize(ctx context.Context, chain []*x509.Certificate) policy.Decision {
	a.entered <- struct{}{}
	select {
	case <-a.release:
	case <-ctx.Done():
		return policy.Decision{Code: policy.CodeDirectoryUnavailable, Reason: "directory: " + ctx.Err().Error()}
	}
	return a.fakeAuth.Authorize(ctx, chain)
}

// awaitEntered waits for n Authorize calls to have begun.
func (a *blockingAuth) awaitEntered(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for i := range n {
		select {
		case <-a.entered:
		case <-timeout:
			t.Fatalf("only %d of %d decisions began", i, n)
		}
	}
}

// patientClient retransmits for long enough to outlast a blocked decision.
func patientClient(a net.Addr) *radbench.Client {
	return &radbench.Client{Addr: a.String(), Secret: []byte(testSecret), Timeout: 300 * time.Millisecond, Retries: 200, MAFirst: true}
}

type authOutcome struct {
	res *radbench.AuthResult
	err error
}

func startLogins(a net.Addr, conf *tls.Config, n int) chan authOutcome {
	out := make(chan authOutcome, n)
	for range n {
		go func() {
			res, err := patientClient(a).Authenticate(context.Background(), "anonymous@example.com", conf)
			out <- authOutcome{res, err}
		}()
	}
	return out
}

// conversation drives one EAP-TLS login over a raw socket, request by
// request.
type conversation struct {
	t          *testing.T
	peer       *eap.Peer
	id         byte
	msg, state []byte
}

func newConversation(t *testing.T, conf *tls.Config) *conversation {
	c := &conversation{t: t, peer: &eap.Peer{Identity: "x", TLS: conf}}
	t.Cleanup(c.peer.Close)
	c.msg = c.peer.Identify(0)
	return c
}

func (c *conversation) request() []byte { return accessRequest(c.t, c.id, c.msg, c.state) }

// next takes the reply to request() and reports its code once the
// conversation has ended.
func (c *conversation) next(reply []byte) (done bool, code layeh.Code) {
	c.t.Helper()
	rp, err := layeh.Parse(reply, []byte(testSecret))
	if err != nil {
		c.t.Fatal(err)
	}
	if rp.Code != layeh.CodeAccessChallenge {
		return true, rp.Code
	}
	c.state = rfc2865.State_Get(rp)
	c.msg, done, err = c.peer.Handle(eapOf(rp))
	if done || err != nil {
		c.t.Fatalf("challenge ended the conversation: %v", err)
	}
	c.id++
	return false, rp.Code
}

// readAsync reads one datagram from conn.
func readAsync(conn net.Conn) <-chan []byte {
	ch := make(chan []byte, 1)
	go func() {
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil {
			ch <- nil
			return
		}
		ch <- buf[:n]
	}()
	return ch
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1500 {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestSlowDirectoryDoesNotStallServer: with every decision blocked and more
// logins waiting for one than there are workers, Status-Server and a new
// conversation are still answered; released, every login is accepted.
func TestSlowDirectoryDoesNotStallServer(t *testing.T) {
	ba := newBlockingAuth(t)
	s := startServerWith(t, func(s *Server) { s.auth = ba }, nil) // 4 workers
	const logins = 10
	results := startLogins(s.Addr(), s.pki.clientTLS(&s.pki.alice, 0), logins)
	ba.awaitEntered(t, logins)
	if n := s.pendingDecisions(); n != logins {
		t.Errorf("%d decisions pending, want %d", n, logins)
	}

	conn := dial(t, s.Addr())
	ss, _ := radbench.EncodeRequest(layeh.New(layeh.CodeStatusServer, []byte(testSecret)))
	if r := rawExchange(t, conn, ss, 10*time.Second); r == nil || r[0] != codeAccessAccept {
		t.Fatalf("Status-Server not answered while decisions wait: %x", r)
	}
	c := newConversation(t, s.pki.clientTLS(&s.pki.alice, tls.VersionTLS12))
	for round := range 2 { // Identity, then ClientHello
		r := rawExchange(t, conn, c.request(), 10*time.Second)
		if r == nil {
			t.Fatalf("round %d of a new login not answered while decisions wait", round)
		}
		if done, code := c.next(r); done {
			t.Fatalf("round %d: %v", round, code)
		}
	}
	select {
	case o := <-results:
		t.Fatalf("a login ended before the directory answered: %+v", o)
	default:
	}
	if d := s.Stats().Drops[DropOverload]; d != 0 {
		t.Errorf("%d overload drops", d)
	}

	close(ba.release)
	for range logins {
		o := <-results
		if o.err != nil {
			t.Fatal(o.err)
		}
		if !o.res.Accepted {
			t.Fatalf("login rejected: %v", o.res.Reply.Code)
		}
		checkAccept(t, o.res, "10")
	}
	// The new login finishes too.
	for {
		r := rawExchange(t, conn, c.request(), 10*time.Second)
		if r == nil {
			t.Fatal("no reply")
		}
		if done, code := c.next(r); done {
			if code != layeh.CodeAccessAccept {
				t.Fatalf("new login: %v", code)
			}
			break
		}
	}
	if st := s.Stats(); st.Accepts != logins+1 || st.SessionsLive != 0 {
		t.Errorf("accepts %d, sessions live %d", st.Accepts, st.SessionsLive)
	}
}

// TestRetransmitDuringDecision: the request that ends the handshake,
// retransmitted while its decision waits, is dropped; retransmitted after
// the answer, it gets the same bytes.
func TestRetransmitDuringDecision(t *testing.T) {
	for _, v := range []struct {
		name string
		max  uint16
	}{{"tls1.2", tls.VersionTLS12}, {"tls1.3", tls.VersionTLS13}} {
		t.Run(v.name, func(t *testing.T) {
			ba := newBlockingAuth(t)
			s := startServerWith(t, func(s *Server) { s.auth = ba }, nil)
			conn := dial(t, s.Addr())
			c := newConversation(t, s.pki.clientTLS(&s.pki.alice, v.max))
			decided := false
			for round := 0; ; round++ {
				if round > 50 {
					t.Fatal("too many rounds")
				}
				req := c.request()
				if _, err := conn.Write(req); err != nil {
					t.Fatal(err)
				}
				ch := readAsync(conn)
				var r []byte
				select {
				case r = <-ch:
				case <-ba.entered:
					if decided {
						t.Fatal("second decision")
					}
					decided = true
					dups := s.Stats().Drops[DropDuplicate]
					if _, err := conn.Write(req); err != nil {
						t.Fatal(err)
					}
					waitFor(t, "the retransmission to be dropped", func() bool { return s.Stats().Drops[DropDuplicate] > dups })
					hits := s.Stats().CacheHits
					close(ba.release)
					r = <-ch
					if r == nil {
						t.Fatal("no answer after the decision")
					}
					again := rawExchange(t, conn, req, 10*time.Second)
					if !bytes.Equal(r, again) {
						t.Fatal("retransmission after the decision got different bytes")
					}
					if s.Stats().CacheHits != hits+1 {
						t.Error("retransmission not answered from the cache")
					}
				}
				if r == nil {
					t.Fatal("no reply")
				}
				if done, code := c.next(r); done {
					if !decided || code != layeh.CodeAccessAccept {
						t.Fatalf("ended with %v, decided %v", code, decided)
					}
					rp, _ := layeh.Parse(r, []byte(testSecret))
					if _, vlan := rfc2868.TunnelPrivateGroupID_GetString(rp); vlan != "10" {
						t.Errorf("VLAN %q", vlan)
					}
					return
				}
			}
		})
	}
}

// TestDecisionsBusy: with every decision slot taken, a finished handshake
// is dropped and decided on the NAS's retransmission.
func TestDecisionsBusy(t *testing.T) {
	ba := newBlockingAuth(t)
	s := startServerWith(t, func(s *Server) { s.auth = ba }, func(c *Config) { c.MaxPendingDecisions = 1 })
	conf := s.pki.clientTLS(&s.pki.alice, 0)
	first := startLogins(s.Addr(), conf, 1)
	ba.awaitEntered(t, 1)
	second := startLogins(s.Addr(), conf, 1)
	waitFor(t, "a decisions_busy drop", func() bool { return s.Stats().Drops[DropDecisionsBusy] > 0 })
	close(ba.release)
	for _, ch := range []chan authOutcome{first, second} {
		o := <-ch
		if o.err != nil {
			t.Fatal(o.err)
		}
		if !o.res.Accepted {
			t.Fatalf("rejected: %v", o.res.Reply.Code)
		}
		checkAccept(t, o.res, "10")
	}
}

// TestShutdownWithPendingDecisions: Run waits for a decision under way;
// after the drain timeout it cancels it (the login is rejected) and
// returns, leaving no goroutine behind.
func TestShutdownWithPendingDecisions(t *testing.T) {
	for _, v := range []struct {
		name    string
		release bool // the directory answers during the drain
	}{{"waits", true}, {"cancels", false}} {
		t.Run(v.name, func(t *testing.T) {
			leakCheck(t)
			p := getPKI(t)
			ba := newBlockingAuth(t)
			cfg := Config{Listen: "127.0.0.1:0", AccountingListen: "off", Workers: 2,
				Clients: []ClientConfig{{Name: "lo", Network: "127.0.0.0/8", Secret: testSecret}}}
			s, err := New(cfg, ba, p.serverTLS(), testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			s.drainTimeout = 200 * time.Millisecond
			if v.release {
				s.drainTimeout = time.Minute
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			login := startLogins(s.Addr(), p.clientTLS(&p.alice, 0), 1)
			ba.awaitEntered(t, 1)
			cancel()
			if v.release {
				select {
				case <-done:
					t.Fatal("Run returned with a decision pending")
				case <-time.After(200 * time.Millisecond):
				}
				close(ba.release)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return")
			}
			o := <-login
			if v.release {
				if o.err != nil || !o.res.Accepted {
					t.Fatalf("login during drain: %v %+v", o.err, o.res)
				}
				checkAccept(t, o.res, "10")
			} else if o.err == nil && o.res.Accepted {
				t.Fatal("accepted without a decision")
			}
		})
	}
}
