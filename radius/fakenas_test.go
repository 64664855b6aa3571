package radius

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	layeh "layeh.com/radius"

	"github.com/gatehouse/gatehouse/policy"
)

// fakeNAS is a NAS's dynamic authorization server (RFC 5176) on
// 127.0.0.1: it checks every request's Request Authenticator and
// Message-Authenticator with the shared secret, records the valid ones and
// answers ACK, NAK or nothing.
type fakeNAS struct {
	conn   *net.UDPConn
	secret []byte
	mode   atomic.Int32 // nasACK, nasNAK, nasSilent, nasNAKNoSession
	reqs   chan nasRequest
	bad    atomic.Int64 // requests failing a check
	done   chan struct{}
}

const (
	nasACK = iota
	nasNAK
	nasSilent
	nasNAKNoSession
)

type nasRequest struct {
	at  time.Time
	pkt *layeh.Packet
	raw []byte
}

func newFakeNAS(t testing.TB, secret string) *fakeNAS {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNAS{conn: c, secret: []byte(secret), reqs: make(chan nasRequest, 64), done: make(chan struct{})}
	go f.serve()
	t.Cleanup(func() {
		c.Close()
		<-f.done
	})
	return f
}

func (f *fakeNAS) port() int { return f.conn.LocalAddr().(*net.UDPAddr).Port }

func (f *fakeNAS) serve() {
	defer close(f.done)
	buf := make([]byte, 4096)
	for {
		n, from, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		raw := append([]byte(nil), buf[:n]...)
		if err := f.check(raw); err != nil {
			f.bad.Add(1)
			continue
		}
		pkt, err := layeh.Parse(raw, f.secret)
		if err != nil {
			f.bad.Add(1)
			continue
		}
		select {
		case f.reqs <- nasRequest{at: time.Now(), pkt: pkt, raw: raw}:
		default:
		}
		var reply []byte
		switch f.mode.Load() {
		case nasACK:
			reply = f.answer(raw, raw[0]+1, 0)
		case nasNAK:
			reply = f.answer(raw, raw[0]+2, 501) // Administratively-Prohibited
		case nasNAKNoSession:
			reply = f.answer(raw, raw[0]+2, errorCauseNoSession)
		}
		if reply != nil {
			f.conn.WriteToUDPAddrPort(reply, from)
		}
	}
}

// check verifies a request independently of the code under test: the
// Request Authenticator (layeh) and a Message-Authenticator that must be
// the first attribute, computed over a zeroed authenticator field.
func (f *fakeNAS) check(raw []byte) error {
	if len(raw) < 38 || (raw[0] != byte(layeh.CodeDisconnectRequest) && raw[0] != byte(layeh.CodeCoARequest)) {
		return errors.New("not a Disconnect- or CoA-Request")
	}
	if !layeh.IsAuthenticRequest(raw, f.secret) {
		return errors.New("bad Request Authenticator")
	}
	if raw[20] != 80 || raw[21] != 18 {
		return errors.New("Message-Authenticator is not the first attribute")
	}
	c := append([]byte(nil), raw...)
	clear(c[4:20])
	clear(c[22:38])
	h := hmac.New(md5.New, f.secret)
	h.Write(c)
	if !hmac.Equal(h.Sum(nil), raw[22:38]) {
		return errors.New("bad Message-Authenticator")
	}
	return nil
}

// answer builds an ACK or NAK with a Message-Authenticator (computed with
// the Request Authenticator) and the Response Authenticator.
func (f *fakeNAS) answer(req []byte, code byte, cause uint32) []byte {
	b := []byte{code, req[1], 0, 0}
	b = append(b, req[4:20]...)
	b = append(b, 80, 18)
	b = append(b, make([]byte, 16)...)
	if cause != 0 {
		b = append(b, 101, 6)
		b = binary.BigEndian.AppendUint32(b, cause)
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	h := hmac.New(md5.New, f.secret)
	h.Write(b)
	copy(b[22:38], h.Sum(nil))
	m := md5.New()
	m.Write(b)
	m.Write(f.secret)
	copy(b[4:20], m.Sum(nil))
	return b
}

// next waits for the next valid request.
func (f *fakeNAS) next(t testing.TB, wait time.Duration) nasRequest {
	t.Helper()
	select {
	case r := <-f.reqs:
		return r
	case <-time.After(wait):
		t.Fatal("fake NAS: no request")
		return nasRequest{}
	}
}

// none checks that no request arrived.
func (f *fakeNAS) none(t testing.TB) {
	t.Helper()
	select {
	case r := <-f.reqs:
		t.Fatalf("fake NAS: unexpected %v", r.pkt.Code)
	default:
	}
}

// logBuf collects JSON log records.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) records(event string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["event"] == event {
			out = append(out, m)
		}
	}
	return out
}

// switchAuth delegates to fakeAuth unless a decision is forced.
type switchAuth struct {
	*fakeAuth
	forced atomic.Pointer[policy.Decision]
}

func (a *switchAuth) Authorize(ctx context.Context, chain []*x509.Certificate) policy.Decision {
	if d := a.forced.Load(); d != nil {
		return *d
	}
	return a.fakeAuth.Authorize(ctx, chain)
}

func (a *fakeAuth) setRule(cn string, w policy.WiFi) {
	a.mu.Lock()
	a.rules[cn] = w
	a.mu.Unlock()
}
