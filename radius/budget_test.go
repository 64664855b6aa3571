package radius

import (
	"crypto/tls"
	"testing"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"

	"github.com/gatehouse/gatehouse/radius/eap"
)

// fragConv is a conversation that sends fragments of a TLS message it
// never finishes (the fragment flood).
type fragConv struct {
	state []byte
	eapID byte
	id    byte
	key   [16]byte
}

// startFragConv opens a conversation and makes it hold about n bytes of
// reassembly buffer, in 1,000-byte fragments of a 64,000-byte message.
func startFragConv(t *testing.T, ip *inproc, id byte, n int) *fragConv {
	t.Helper()
	c := &fragConv{id: id}
	c.step(t, ip, eap.AppendIdentity(nil, 1, "frag"))
	frag := make([]byte, 1000)
	for sent := 0; sent < n; sent += len(frag) {
		flags := byte(eap.FlagMore)
		if sent == 0 {
			flags |= eap.FlagLength
		}
		if !c.step(t, ip, eap.AppendTLS(nil, eap.CodeResponse, c.eapID, flags, 64000, frag)) {
			t.Fatalf("conversation %d ended after %d bytes", id, sent)
		}
	}
	return c
}

// step sends one EAP response; false if the answer is not a Challenge.
func (c *fragConv) step(t *testing.T, ip *inproc, msg []byte) bool {
	t.Helper()
	c.id++
	reply := ip.do(accessRequest(t, c.id, msg, c.state))
	rp, err := layeh.Parse(reply, []byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	if rp.Code != layeh.CodeAccessChallenge {
		return false
	}
	c.state = rfc2865.State_Get(rp)
	copy(c.key[:], c.state)
	c.eapID = eapOf(rp)[1]
	return true
}

func (ip *inproc) live(key [16]byte) bool {
	t := ip.s.sessions
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[key] != nil
}

// TestMemoryBudget: conversations stuffed with fragments are evicted,
// biggest first, once the bytes the conversations hold exceed
// MaxSessionBytes; small ones and a login under way stay, and the login
// completes.
func TestMemoryBudget(t *testing.T) {
	const budget = 1 << 20
	ip := newInproc(t, func(c *Config) { c.MaxSessionBytes = budget })

	// A real login, past its ClientHello: a TLS handshake is running.
	p := getPKI(t)
	login := newConversation(t, p.clientTLS(&p.alice, tls.VersionTLS13))
	for range 2 {
		if done, code := login.next(ip.do(login.request())); done {
			t.Fatalf("login ended early: %v", code)
		}
	}
	// Small fragment holders, then big ones until the budget overflows.
	var small, big []*fragConv
	for i := range 10 {
		small = append(small, startFragConv(t, ip, byte(i*16), 4000))
	}
	for i := 0; ip.s.Stats().SessionsEvictedMemory == 0; i++ {
		if i == 40 {
			t.Fatalf("no eviction; %d bytes held", ip.s.sessions.heldBytes())
		}
		big = append(big, startFragConv(t, ip, byte(160+i), 60000))
	}
	st := ip.s.Stats()
	if st.SessionBytes > budget {
		t.Errorf("%d bytes held, budget %d", st.SessionBytes, budget)
	}
	evicted := 0
	for _, c := range big {
		if !ip.live(c.key) {
			evicted++
		}
	}
	if evicted == 0 || uint64(evicted) != st.SessionsEvictedMemory {
		t.Errorf("%d big conversations gone, %d evicted for memory", evicted, st.SessionsEvictedMemory)
	}
	for i, c := range small {
		if !ip.live(c.key) {
			t.Errorf("small conversation %d evicted before the big ones", i)
		}
	}
	t.Logf("%d conversations holding ~60 KB and 10 holding ~4 KB: %d evicted, %d bytes held (budget %d)",
		len(big), evicted, st.SessionBytes, budget)

	// An evicted conversation's next fragment is rejected.
	for _, c := range big {
		if !ip.live(c.key) {
			if c.step(t, ip, eap.AppendTLS(nil, eap.CodeResponse, c.eapID, eap.FlagMore, 0, make([]byte, 100))) {
				t.Error("evicted conversation continued")
			}
			break
		}
	}
	// The login under way completes.
	for {
		done, code := login.next(ip.do(login.request()))
		if done {
			if code != layeh.CodeAccessAccept {
				t.Fatalf("login: %v", code)
			}
			break
		}
	}
}
