package radius

import (
	"context"
	"crypto/tls"
	"testing"

	"layeh.com/radius/rfc2865"
)

// TestResumptionReauthorizes: a resumed TLS session (1.2 and 1.3) is
// authorized again on the certificates restored from the ticket; a
// decision is never replayed, so a user removed from policy is rejected
// even when resuming.
func TestResumptionReauthorizes(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		s := startServer(t, nil)
		conf := s.pki.clientTLS(&s.pki.alice, v)
		conf.ClientSessionCache = tls.NewLRUClientSessionCache(8)
		c := s.client(testSecret)
		for i, want := range []struct{ accept, resumed bool }{{true, false}, {true, true}, {false, true}} {
			if i == 2 {
				s.auth.deleteRule("Alice Example") // policy changed
			}
			res, err := c.Authenticate(context.Background(), "alice", conf)
			if err != nil {
				t.Fatal(err)
			}
			if res.Accepted != want.accept {
				t.Fatalf("%x #%d: accepted %v", v, i, res.Accepted)
			}
			if want.accept && res.TLS.DidResume != want.resumed {
				t.Errorf("%x #%d: resumed %v", v, i, res.TLS.DidResume)
			}
			if want.accept && rfc2865.UserName_GetString(res.Reply) != "Alice Example" {
				t.Errorf("%x #%d: User-Name %q", v, i, rfc2865.UserName_GetString(res.Reply))
			}
		}
		if n := s.auth.calls.Load(); n != 3 {
			t.Errorf("%x: Authorize called %d times, want 3", v, n)
		}
	}
}

func TestReplyMessageOnReject(t *testing.T) {
	s := startServer(t, func(c *Config) { c.ReplyMessage = "Access denied: ask IT" })
	res, err := s.client(testSecret).Authenticate(context.Background(), "x", s.pki.clientTLS(&s.pki.mallory, 0))
	if err != nil || res.Accepted {
		t.Fatal(err)
	}
	if got := rfc2865.ReplyMessage_GetString(res.Reply); got != "Access denied: ask IT" {
		t.Errorf("Reply-Message %q", got)
	}
}
