package eap

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

func selfSigned(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{cn}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

type pair struct {
	srv    *ServerConfig
	client *tls.Config
}

func newPair(t testing.TB, max uint16, clientCert bool) pair {
	sc := selfSigned(t, "server.test")
	srv := &ServerConfig{TLS: &tls.Config{Certificates: []tls.Certificate{sc}, ClientAuth: tls.RequireAnyClientCert, MaxVersion: max}}
	pool := x509.NewCertPool()
	pool.AddCert(sc.Leaf)
	cl := &tls.Config{RootCAs: pool, ServerName: "server.test", MaxVersion: max}
	if clientCert {
		cl.Certificates = []tls.Certificate{selfSigned(t, "client.test")}
	}
	return pair{srv, cl}
}

// converse runs a whole conversation in memory; accept decides at Decide.
func converse(t testing.TB, p pair, frag int, accept bool) (srvMSK, peerMSK []byte, rounds int, err error) {
	return converseState(t, p, frag, accept, nil)
}

// converseState is converse that also returns the peer's TLS state (if
// peerState is not nil).
func converseState(t testing.TB, p pair, frag int, accept bool, peerState *tls.ConnectionState) (srvMSK, peerMSK []byte, rounds int, err error) {
	peer := &Peer{Identity: "x", TLS: p.client, FragSize: frag}
	defer peer.Close()
	if peerState != nil {
		defer func() { *peerState = peer.State() }()
	}
	idResp := peer.Identify(1)
	s, req := NewServerSession(p.srv, 1, frag)
	defer s.Close()
	_ = idResp
	for rounds = 0; rounds < 200; rounds++ {
		if len(req) > frag {
			return nil, nil, rounds, errors.New("server message larger than fragment size")
		}
		resp, done, perr := peer.Handle(req)
		if done {
			if perr != nil {
				return nil, nil, rounds, perr
			}
			return s.MSK(), peer.MSK(), rounds, nil
		}
		if len(resp) > frag {
			return nil, nil, rounds, errors.New("peer message larger than fragment size")
		}
		st := s.Handle(resp)
		if st.Outcome == Decide {
			if accept && len(s.State().PeerCertificates) > 0 {
				st = s.Accept()
			} else {
				st = s.Reject(errors.New("denied"))
			}
		}
		switch st.Outcome {
		case Discard:
			return nil, nil, rounds, st.Err
		case Failure:
			if _, _, perr := peer.Handle(st.Msg); !errors.Is(perr, ErrFailure) {
				return nil, nil, rounds, errors.New("peer missed the failure")
			}
			return nil, nil, rounds, st.Err
		}
		req = st.Msg
	}
	return nil, nil, rounds, errors.New("too many rounds")
}

func TestConversation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		max    uint16
		frag   int
		cert   bool
		accept bool
	}{
		{"tls1.3", tls.VersionTLS13, 1020, true, true},
		{"tls1.2", tls.VersionTLS12, 1020, true, true},
		{"tls1.3 frag 100", tls.VersionTLS13, 100, true, true},
		{"tls1.2 frag 64", tls.VersionTLS12, 64, true, true},
		{"no client cert", tls.VersionTLS13, 1020, false, true},
		{"denied", tls.VersionTLS13, 1020, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sm, pm, rounds, err := converse(t, newPair(t, tc.max, tc.cert), tc.frag, tc.accept)
			if !tc.cert || !tc.accept {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatalf("after %d rounds: %v", rounds, err)
			}
			if len(sm) != 64 || !bytes.Equal(sm, pm) {
				t.Fatalf("MSKs differ")
			}
		})
	}
}

func TestReassembler(t *testing.T) {
	var r reassembler
	if _, more, err := r.add(FlagLength|FlagMore, 6, []byte("abc"), 100); !more || err != nil {
		t.Fatal(more, err)
	}
	msg, more, err := r.add(0, 0, []byte("def"), 100)
	if more || err != nil || string(msg) != "abcdef" {
		t.Fatalf("%q %v %v", msg, more, err)
	}
	for _, tc := range []struct {
		name  string
		steps [][3]int // flags, total, fragment length
	}{
		{"announced too large", [][3]int{{FlagLength | FlagMore, 1000, 10}}},
		{"total exceeded", [][3]int{{FlagLength | FlagMore, 10, 8}, {0, 0, 8}}},
		{"short of total", [][3]int{{FlagLength | FlagMore, 20, 8}, {0, 0, 8}}},
		{"cap without L", [][3]int{{FlagMore, 0, 60}, {FlagMore, 0, 60}}},
		{"empty more", [][3]int{{FlagMore, 0, 0}}},
	} {
		var r reassembler
		var err error
		for _, s := range tc.steps {
			if _, _, err = r.add(byte(s[0]), s[1], make([]byte, s[2]), 100); err != nil {
				break
			}
		}
		if err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestFragmenter(t *testing.T) {
	data := bytes.Repeat([]byte{7}, 250)
	f := fragmenter{data: data}
	var got []byte
	for i := 0; f.pending(); i++ {
		m := f.next(nil, CodeRequest, byte(i), 100)
		if len(m) > 100 {
			t.Fatalf("fragment %d: %d bytes", i, len(m))
		}
		p, err := Parse(m)
		if err != nil {
			t.Fatal(err)
		}
		flags, total, frag, err := TLSData(p.Data)
		if err != nil {
			t.Fatal(err)
		}
		if (i == 0) != (flags&FlagLength != 0) || (i == 0 && total != 250) {
			t.Errorf("fragment %d: flags %x total %d", i, flags, total)
		}
		got = append(got, frag...)
		if f.pending() != (flags&FlagMore != 0) {
			t.Errorf("fragment %d: M flag %x", i, flags)
		}
	}
	if !bytes.Equal(got, data) {
		t.Error("fragments do not reassemble")
	}
}

// FuzzServerSession feeds arbitrary EAP responses to a fresh session: no
// panic, and the result is always a defined outcome.
func FuzzServerSession(f *testing.F) {
	p := newPair(f, 0, true)
	f.Add([]byte{2, 1, 0, 6, 13, 0})
	f.Add([]byte{2, 2, 0, 6, 3, 13})
	f.Add([]byte{2, 2, 0, 10, 13, 0xC0, 0, 0, 0xff, 0xff})
	f.Add([]byte{2, 2, 0, 12, 13, 0x80, 0, 0, 0, 2, 0x16, 0x03})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, _ := NewServerSession(p.srv, 1, 300)
		defer s.Close()
		for len(b) > 0 {
			n := min(len(b), 1+int(b[0])%64)
			st := s.Handle(b[:n])
			b = b[n:]
			if st.Outcome == Failure || st.Outcome == Decide {
				return
			}
		}
	})
}

// FuzzParse checks EAP packet and EAP-TLS header parsing.
func FuzzParse(f *testing.F) {
	f.Add([]byte{2, 1, 0, 10, 13, 0x80, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		if p.Type == TypeTLS {
			TLSData(p.Data)
		}
	})
}
