package radius

import (
	"cmp"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

// bigChain is a client whose chain (leaf and intermediates) is about
// chainBytes long: a root and n ECDSA intermediates whose names are padded
// with organizational units (each name appears in two certificates), as
// deep PKIs with verbose names produce. The leaf is "Erin Example".
type bigChain struct {
	root  *policytest.CA
	leaf  *policytest.Leaf
	bytes int
}

func newBigChain(t *testing.T, n, padOUs int) *bigChain {
	t.Helper()
	name := func(cn string) *pkix.Name {
		nm := &pkix.Name{CommonName: cn, Organization: []string{policytest.Organization}}
		for i := range padOUs {
			nm.OrganizationalUnit = append(nm.OrganizationalUnit, fmt.Sprintf("%s division %02d of a very large organization chart", cn, i))
		}
		return nm
	}
	root := policytest.MustRoot(t, "big root", policytest.CAOptions{Subject: name("Big Root")})
	ca := root
	for i := range n {
		ca = ca.MustIntermediate(t, "", policytest.CAOptions{Subject: name(fmt.Sprintf("Big Intermediate %d", i+1))})
	}
	leaf := ca.MustIssue(t, policytest.LeafOptions{CN: "Erin Example", Emails: []string{"erin@example.com"}})
	c := &bigChain{root: root, leaf: leaf}
	for _, der := range leaf.TLSCertificate().Certificate {
		c.bytes += len(der)
	}
	return c
}

var reAccessRequest = regexp.MustCompile(`RADIUS message: code=1 \(Access-Request\)`)

// eapRoundTrips counts the RADIUS round trips (Access-Requests) of an
// eapol_test run.
func eapRoundTrips(out string) int { return len(reAccessRequest.FindAllString(out, -1)) }

// startServerTrusting is startServer whose authorizer also trusts roots.
func startServerTrusting(t *testing.T, roots ...*x509.Certificate) *testServer {
	t.Helper()
	p := getPKI(t)
	auth := newFakeAuth(p)
	for _, r := range roots {
		auth.roots.AddCert(r)
	}
	cfg := Config{
		Listen: "127.0.0.1:0", AccountingListen: "off", Workers: 4,
		Clients: []ClientConfig{{Name: "lo", Network: "127.0.0.0/8", Secret: testSecret}},
	}
	leakCheck(t)
	s, err := New(cfg, auth, p.serverTLS(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	runServer(t, s)
	return &testServer{Server: s, auth: auth, pki: p}
}

// TestRoundTripsVsFreeRADIUS: a real supplicant (eapol_test, TLS 1.3) with
// a long client chain behind a small Framed-MTU logs in, in no more EAP
// round trips than FreeRADIUS needs for the same chain and MTU. The
// server's final flight used to carry a session ticket holding the whole
// client chain (about as many round trips again as the chain itself),
// which took the big chain past wpa_supplicant's limit of 100 rounds.
func TestRoundTripsVsFreeRADIUS(t *testing.T) {
	bin := requireTool(t, "eapol_test")
	big := newBigChain(t, 8, 6)
	s := startServerTrusting(t, big.root.Cert)
	dir := writeClientPEMs(t, s.pki)
	writePEM(t, dir, "big", big.leaf.TLSCertificate().Certificate, big.leaf.Key)
	erinBytes := 0
	for _, der := range s.pki.erin.Certificate {
		erinBytes += len(der)
	}
	type result struct{ ours, fr int }
	cases := []struct {
		cert       string
		chainBytes int
		mtu        int // Framed-MTU
		frag       int // the supplicant's fragment_size; 0: its default, 1398
	}{
		{"erin", erinBytes, 300, 296},
		{"big", big.bytes, 300, 296},
		{"big", big.bytes, 150, 0},
	}
	results := make([]result, len(cases))
	tc := func(i int) eapolCase {
		c := cases[i]
		// No realm: FreeRADIUS's stock configuration proxies example.com.
		return eapolCase{cert: c.cert, tls13: true, frag: c.frag, mtu: c.mtu, secret: testSecret, identity: "anonymous"}
	}
	for i, c := range cases {
		out, err := runEAPOLTest(t, bin, dir, s.Addr().String(), tc(i))
		results[i].ours = eapRoundTrips(out)
		if err != nil || !strings.Contains(out, "SUCCESS") || !strings.Contains(out, "Using TLS version TLSv1.3") {
			t.Errorf("%s (%d-byte chain) at Framed-MTU %d: gatehouse login failed after %d round trips: %v\n%s",
				c.cert, c.chainBytes, c.mtu, results[i].ours, err, tail(out, 40))
		}
	}
	frAddr, _ := startFreeRADIUS(t, "1.3", false, big.root.PEM)
	for i, c := range cases {
		out, err := runEAPOLTest(t, bin, dir, frAddr, tc(i))
		results[i].fr = eapRoundTrips(out)
		if err != nil || !strings.Contains(out, "SUCCESS") {
			t.Errorf("%s at Framed-MTU %d: FreeRADIUS login failed: %v\n%s", c.cert, c.mtu, err, tail(out, 40))
			continue
		}
		t.Logf("%s: %d-byte chain, Framed-MTU %d, supplicant fragment_size %d, TLS 1.3: %d round trips (FreeRADIUS %d)",
			c.cert, c.chainBytes, c.mtu, cmp.Or(c.frag, 1398), results[i].ours, results[i].fr)
		if results[i].ours > results[i].fr {
			t.Errorf("%s at Framed-MTU %d: %d round trips, FreeRADIUS %d", c.cert, c.mtu, results[i].ours, results[i].fr)
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
