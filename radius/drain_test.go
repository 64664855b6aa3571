package radius

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/radius/eap"
)

// TestDrainWaitsForConversationHeardBeforeShutdown: a conversation with
// TLS under way that was last heard from 2.5 s before shutdown began is
// waited for — it gets a whole abandonedAfter from the start of the drain
// for its next round, not the 0.5 s left of its own (cmd's
// TestServeShutdownMidHandshake lost its conversation so on a loaded
// machine: "connection refused"). One silent for longer than
// abandonedAfter before shutdown is not waited for.
func TestDrainWaitsForConversationHeardBeforeShutdown(t *testing.T) {
	p := getPKI(t)
	s, err := New(Config{Clients: []ClientConfig{{Name: "lo", Network: "127.0.0.0/8", Secret: testSecret}}},
		newFakeAuth(p), p.serverTLS(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.drainTimeout = time.Minute
	drained := func(silent time.Duration) chan struct{} {
		ss := &session{eap: &eap.ServerSession{}}
		s.sessions.add(ss, time.Now().Add(-silent))
		s.sessions.promote(ss) // TLS under way
		done := make(chan struct{})
		go func() {
			s.drain()
			close(done)
		}()
		t.Cleanup(func() { s.sessions.remove(ss) })
		return done
	}

	done := drained(2500 * time.Millisecond)
	// Past the 0.5 s its own silence left it, well within the 3 s from the
	// drain's start.
	time.Sleep(time.Second)
	select {
	case <-done:
		t.Fatal("drain gave up on a conversation heard from 2.5 s before shutdown after less than 1 s")
	default:
	}
	for ss := s.sessions.lists[listActive].head; ss != nil; ss = s.sessions.lists[listActive].head {
		s.sessions.remove(ss) // the conversation ends
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("drain did not return once the conversation ended")
	}

	select {
	case <-drained(4 * time.Second):
	case <-time.After(30 * time.Second):
		t.Fatal("drain waited for a conversation silent for 4 s before shutdown")
	}
}
