package radius

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/radius/eap"
)

func TestSessionTableEviction(t *testing.T) {
	now := time.Now()
	tb := newSessionTable(3, time.Minute, time.Hour)
	mk := func(i byte) *session {
		s := &session{eap: &eap.ServerSession{}}
		s.key[0] = i
		return s
	}
	a, b, c, d := mk(1), mk(2), mk(3), mk(4)
	tb.add(a, now)
	tb.add(b, now)
	tb.promote(a) // a has TLS under way
	tb.add(c, now)
	if ev := tb.add(d, now); ev != b {
		t.Fatalf("evicted %v, want the oldest half-open (b)", ev)
	}
	tb.get(&c.key, now.Add(time.Second)) // c recently active
	e := mk(5)
	if ev := tb.add(e, now); ev != d {
		t.Fatalf("evicted %v, want d", ev)
	}
	// Only active ones left besides half-open c, e: a stays until the end.
	if tb.get(&a.key, now) == nil {
		t.Fatal("active conversation evicted while half-open ones remained")
	}
	// Idle expiry.
	gone := tb.expire(now.Add(2 * time.Minute))
	if len(gone) != 3 || tb.len() != 0 {
		t.Fatalf("expired %d, left %d", len(gone), tb.len())
	}
	// Total timeout even when active.
	tb = newSessionTable(3, time.Hour, time.Minute)
	tb.add(a, now)
	tb.get(&a.key, now.Add(59*time.Second))
	if gone := tb.expire(now.Add(61 * time.Second)); len(gone) != 1 {
		t.Fatalf("total timeout: expired %d", len(gone))
	}
}

// TestHalfOpenPerClient: a client at its bound of half-open conversations
// loses its own oldest, never another client's or one under way.
func TestHalfOpenPerClient(t *testing.T) {
	now := time.Now()
	tb := newSessionTable(100, time.Minute, time.Hour)
	tb.halfOpenMax = 2
	tb.clients = make([]clientList, 2)
	mk := func(i byte, client int) *session {
		s := &session{eap: &eap.ServerSession{}, client: client}
		s.key[0] = i
		return s
	}
	other := mk(1, 1)
	tb.add(other, now)
	busy := mk(2, 0)
	tb.add(busy, now)
	tb.promote(busy) // TLS under way: not half-open
	a, b, c := mk(3, 0), mk(4, 0), mk(5, 0)
	tb.add(a, now)
	tb.add(b, now)
	if ev := tb.add(c, now); ev != a {
		t.Fatalf("evicted %v, want client 0's oldest half-open (a)", ev)
	}
	for _, s := range []*session{other, busy, b, c} {
		if tb.get(&s.key, now) == nil {
			t.Errorf("session %d evicted", s.key[0])
		}
	}
	if tb.clients[0].n != 2 || tb.clients[1].n != 1 {
		t.Errorf("half-open counts %d, %d", tb.clients[0].n, tb.clients[1].n)
	}
	tb.remove(b)
	tb.promote(c)
	if tb.clients[0].n != 0 {
		t.Errorf("client 0 still counts %d half-open", tb.clients[0].n)
	}
}

// TestFloodDoesNotStopRealUser: a flood of Identity-only conversations
// beyond MaxSessions evicts half-open ones, never a handshake under way.
func TestFloodDoesNotStopRealUser(t *testing.T) {
	ip := newInproc(t, func(c *Config) { c.MaxSessions = 16 })
	p := getPKI(t)
	peer := &eap.Peer{Identity: "alice", TLS: p.clientTLS(&p.alice, 0)}
	defer peer.Close()
	src := netip.MustParseAddrPort("127.0.0.1:5000")
	msg := peer.Identify(0)
	var state []byte
	for id, round := byte(0), 0; ; id, round = id+1, round+1 {
		ip.j.src = src
		r := ip.do(accessRequest(t, id, msg, state))
		if r == nil {
			t.Fatalf("round %d dropped", round)
		}
		rp, _ := layeh.Parse(r, []byte(testSecret))
		if rp.Code == layeh.CodeAccessAccept {
			break
		}
		if rp.Code != layeh.CodeAccessChallenge {
			t.Fatalf("round %d: %v", round, rp.Code)
		}
		state = rfc2865.State_Get(rp)
		var done bool
		var err error
		if msg, done, err = peer.Handle(eapOf(rp)); done || err != nil {
			t.Fatal(err)
		}
		if round == 1 { // ClientHello (first fragment) in: now flood
			for k := range 200 {
				ip.j.src = netip.AddrPortFrom(src.Addr(), uint16(6000+k))
				if ip.do(accessRequest(t, byte(k), eap.AppendIdentity(nil, 1, fmt.Sprint("flood", k)), nil)) == nil {
					t.Fatal("flood request dropped")
				}
			}
		}
	}
	st := ip.s.Stats()
	if st.Accepts != 1 || st.SessionsEvicted < 180 || st.SessionsLive > 16 {
		t.Errorf("stats %+v", st)
	}
}

// TestIdleConversationExpires: a conversation abandoned mid-handshake is
// ended by the idle timeout, its TLS goroutine exits, and a late request
// for it is rejected.
func TestIdleConversationExpires(t *testing.T) {
	s := startServer(t, func(c *Config) { c.SessionIdleTimeout = policy.Duration{Duration: 500 * time.Millisecond} })
	conn := dial(t, s.Addr())
	p := s.pki
	peer := &eap.Peer{Identity: "alice", TLS: p.clientTLS(&p.alice, 0)}
	defer peer.Close()
	msg := peer.Identify(0)
	var state []byte
	var last *layeh.Packet
	for id := byte(0); id < 6; id++ {
		r := rawExchange(t, conn, accessRequest(t, id, msg, state), 2*time.Second)
		if r == nil {
			t.Fatal("no answer")
		}
		last, _ = layeh.Parse(r, []byte(testSecret))
		state = rfc2865.State_Get(last)
		var err error
		if msg, _, err = peer.Handle(eapOf(last)); err != nil {
			t.Fatal(err)
		}
	}
	// The server's handshake goroutine is now waiting for us; go idle.
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().SessionsExpired == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if st := s.Stats(); st.SessionsExpired != 1 || st.SessionsLive != 0 {
		t.Fatalf("stats %+v", st)
	}
	r := rawExchange(t, conn, accessRequest(t, 9, msg, state), 2*time.Second)
	if r == nil || r[0] != codeAccessReject {
		t.Fatalf("late request: %v", r)
	}
}
