package eap

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// asyncStep is Handle through HandleAsync, as radius drives it: a Pending
// step's result arrives on the TLS goroutine, exactly once.
func asyncStep(t *testing.T, s *ServerSession, resp []byte) Step {
	t.Helper()
	got := make(chan Step, 2)
	var caller, tlsSide uint64
	caller = goid()
	st := s.HandleAsync(resp, func(st Step) {
		tlsSide = goid()
		got <- st
	})
	if st.Outcome != Pending {
		return st
	}
	select {
	case st = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no step from the TLS goroutine")
	}
	if tlsSide == caller {
		t.Error("continuation ran on the caller's goroutine")
	}
	select {
	case <-got:
		t.Fatal("continuation called twice")
	case <-time.After(10 * time.Millisecond):
	}
	return st
}

// goid is the current goroutine's id (runtime.Stack's first line), for the
// test only.
func goid() uint64 {
	var b [64]byte
	s := strings.TrimPrefix(string(b[:runtime.Stack(b[:], false)]), "goroutine ")
	var n uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + uint64(c-'0')
	}
	return n
}

// TestHandleAsync: a whole conversation, TLS 1.2 and 1.3, driven through
// HandleAsync ends like one driven through Handle: same number of rounds,
// the same MSK on both sides, every TLS step answered from the TLS
// goroutine once.
func TestHandleAsync(t *testing.T) {
	for _, max := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		p := newPair(t, max, true)
		_, _, syncRounds, err := converse(t, p, 300, true)
		if err != nil {
			t.Fatal(err)
		}
		peer := &Peer{Identity: "x", TLS: p.client, FragSize: 300}
		s, req := NewServerSession(p.srv, 1, 300)
		rounds := 0
		for ; rounds < 100; rounds++ {
			resp, done, perr := peer.Handle(req)
			if done {
				if perr != nil {
					t.Fatalf("%x: peer: %v", max, perr)
				}
				break
			}
			st := asyncStep(t, s, resp)
			if st.Outcome == Decide {
				st = s.Accept()
			}
			if st.Outcome != Continue && st.Outcome != Success {
				t.Fatalf("%x: step %v: %v", max, st.Outcome, st.Err)
			}
			req = st.Msg
		}
		if rounds != syncRounds {
			t.Errorf("%x: %d rounds, %d with Handle", max, rounds, syncRounds)
		}
		if len(s.MSK()) != 64 || !bytes.Equal(s.MSK(), peer.MSK()) {
			t.Errorf("%x: MSKs differ", max)
		}
		s.Close()
		peer.Close()
	}
}

// TestHandleAsyncStepTimeout: a TLS step that overruns StepTimeout ends the
// conversation with a Failure, reported once, from the TLS goroutine.
func TestHandleAsyncStepTimeout(t *testing.T) {
	p := newPair(t, tls.VersionTLS13, true)
	slow := p.srv.TLS.Clone()
	cert := &p.srv.TLS.Certificates[0]
	release := make(chan struct{})
	defer close(release)
	slow.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		<-release // a step that never ends by itself
		return cert, nil
	}
	slow.Certificates = nil
	p.srv.TLS = slow
	p.srv.StepTimeout = 50 * time.Millisecond
	p.client.CurvePreferences = []tls.CurveID{tls.X25519} // a ClientHello in one fragment
	peer := &Peer{Identity: "x", TLS: p.client}
	defer peer.Close()
	s, req := NewServerSession(p.srv, 1, 1020)
	defer s.Close()
	resp, _, err := peer.Handle(req)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan Step, 2)
	if st := s.HandleAsync(resp, func(st Step) { got <- st }); st.Outcome != Pending {
		t.Fatalf("first TLS message not handed to the TLS goroutine: %v", st.Outcome)
	}
	// The timeout closes the conversation; the step reports it once the
	// TLS goroutine comes back (here: when the certificate is released).
	time.Sleep(100 * time.Millisecond)
	release <- struct{}{}
	select {
	case st := <-got:
		if st.Outcome != Failure || !errors.Is(st.Err, net.ErrClosed) && !errors.Is(st.Err, io.ErrClosedPipe) {
			t.Errorf("overrun step: %v, %v; want Failure (closed)", st.Outcome, st.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no step after the timeout")
	}
	select {
	case <-got:
		t.Fatal("continuation called twice")
	case <-time.After(10 * time.Millisecond):
	}
}
