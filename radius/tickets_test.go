package radius

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// ticketRecorder is a client session cache that records the size of every
// ticket the server sends.
type ticketRecorder struct {
	tls.ClientSessionCache
	mu    sync.Mutex
	sizes []int
}

func newTicketRecorder() *ticketRecorder {
	return &ticketRecorder{ClientSessionCache: tls.NewLRUClientSessionCache(8)}
}

func (r *ticketRecorder) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		if ticket, _, err := cs.ResumptionState(); err == nil {
			r.mu.Lock()
			r.sizes = append(r.sizes, len(ticket))
			r.mu.Unlock()
		}
	}
	r.ClientSessionCache.Put(key, cs)
}

func (r *ticketRecorder) last() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sizes) == 0 {
		return -1
	}
	return r.sizes[len(r.sizes)-1]
}

// maxTicket is the largest ticket the server may send: a handle, not the
// session (which carries the client's whole certificate chain).
const maxTicket = 64

// TestTicketSize: the session ticket is tens of bytes whatever the client's
// chain (leaf only, or three RSA-4096 intermediates), for TLS 1.2 and 1.3;
// the ticket resumes, and a resumed login takes fewer round trips.
func TestTicketSize(t *testing.T) {
	s := startServer(t, nil)
	p := s.pki
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, c := range []struct {
			name string
			cert *tls.Certificate
		}{{"leaf", &p.alice}, {"long chain", &p.erin}} {
			t.Run(fmt.Sprintf("%s tls%x", c.name, v), func(t *testing.T) {
				conf := p.clientTLS(c.cert, v)
				rec := newTicketRecorder()
				conf.ClientSessionCache = rec
				cl := s.client(testSecret)
				cl.FramedMTU = 300
				var rounds [2]int
				for i := range rounds {
					res, err := cl.Authenticate(context.Background(), "x", conf)
					if err != nil || !res.Accepted {
						t.Fatalf("login %d: %v accepted=%v", i, err, res.Accepted)
					}
					if res.TLS.DidResume != (i == 1) {
						t.Errorf("login %d: resumed %v", i, res.TLS.DidResume)
					}
					rounds[i] = res.Rounds
					if n := rec.last(); n < 0 || n > maxTicket {
						t.Errorf("login %d: ticket of %d bytes, want 1..%d", i, n, maxTicket)
					}
				}
				t.Logf("ticket %d bytes; round trips at Framed-MTU 300: %d full, %d resumed", rec.last(), rounds[0], rounds[1])
			})
		}
	}
}

// TestForgetTLSSessions: after ForgetTLSSessions (a policy swap) the next
// login is a full handshake, for TLS 1.2 and 1.3, and still accepted; the
// one after resumes again.
func TestForgetTLSSessions(t *testing.T) {
	s := startServer(t, nil)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		conf := s.pki.clientTLS(&s.pki.alice, v)
		conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		cl := s.client(testSecret)
		for i, want := range []bool{false, true, false, true} {
			if i == 2 {
				s.ForgetTLSSessions()
				if n := s.TLSSessions().Entries; n != 0 {
					t.Errorf("%d sessions after ForgetTLSSessions", n)
				}
			}
			res, err := cl.Authenticate(context.Background(), "x", conf)
			if err != nil || !res.Accepted {
				t.Fatalf("tls %x login %d: %v", v, i, err)
			}
			if res.TLS.DidResume != want {
				t.Errorf("tls %x login %d: resumed %v, want %v", v, i, res.TLS.DidResume, want)
			}
		}
	}
	// The last flush also dropped TLS 1.2's session: one left.
	if st := s.Stats(); st.TLSResumptions != 4 || st.TLSSessions != 1 {
		t.Errorf("stats: %d resumptions, %d sessions; want 4, 1", st.TLSResumptions, st.TLSSessions)
	}
}

// TestTLSSessionConfig: bad tls_session_* values are refused by New, the
// error naming the key.
func TestTLSSessionConfig(t *testing.T) {
	p := getPKI(t)
	for key, mod := range map[string]func(*Config){
		"tls_session_cache":       func(c *Config) { c.TLSSessionCache = -1 },
		"tls_session_cache_bytes": func(c *Config) { c.TLSSessionCacheBytes = -1 },
		"tls_session_lifetime":    func(c *Config) { c.TLSSessionLifetime = policy.Duration{Duration: -time.Hour} },
	} {
		cfg := Config{Clients: []ClientConfig{{Name: "ap", Network: "10.0.0.0/8", Secret: "s"}}}
		mod(&cfg)
		_, err := New(cfg, newFakeAuth(p), p.serverTLS(), nil)
		if err == nil || !strings.HasPrefix(err.Error(), "radius: "+key+" ") {
			t.Errorf("%s: err = %v", key, err)
		}
	}
	cfg := Config{Clients: []ClientConfig{{Name: "ap", Network: "10.0.0.0/8", Secret: "s"}},
		TLSSessionCache: 10, TLSSessionCacheBytes: 1 << 20, TLSSessionLifetime: policy.Duration{Duration: time.Hour}}
	if _, err := New(cfg, newFakeAuth(p), p.serverTLS(), nil); err != nil {
		t.Error(err)
	}
}
