package policytest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// pkiDir is the committed shared test PKI written by genpki.
const pkiDir = "../../testdata/pki"

func readPEM(t *testing.T, name, typ string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(pkiDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != typ {
			t.Fatalf("%s: PEM block %q, want %q", name, b.Type, typ)
		}
		out = append(out, b.Bytes)
	}
	if len(out) == 0 || len(strings.TrimSpace(string(data))) != 0 {
		t.Fatalf("%s: no %s blocks or trailing garbage", name, typ)
	}
	return out
}

func readCerts(t *testing.T, name string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, der := range readPEM(t, name, "CERTIFICATE") {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, c)
	}
	return out
}

func readCRL(t *testing.T, name string) *x509.RevocationList {
	t.Helper()
	ders := readPEM(t, name, "X509 CRL")
	crl, err := x509.ParseRevocationList(ders[0])
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return crl
}

var clients = []string{"alice", "bob", "frank", "thermostat-0001", "carol", "dave", "mallory-wrongca", "mallory-spoofed", "noeku", "erin"}

func TestTestdataClients(t *testing.T) {
	roots := x509.NewCertPool()
	for _, n := range []string{"employee-root.pem", "device-ca.pem"} {
		roots.AddCert(readCerts(t, n)[0])
	}
	// What a verifier configured with the real CAs knows: both roots and
	// employee-int, plus whatever the client sends.
	empInt := readCerts(t, "employee-int.pem")[0]
	now := time.Now()
	for _, tc := range []struct {
		name    string
		chain   int                     // certificates in NAME-chain.pem
		wantErr func(error) bool        // nil: must verify
		check   func(*x509.Certificate) // extra checks on the leaf
	}{
		{name: "alice", chain: 2, check: func(c *x509.Certificate) {
			if got := upns(t, c); !slices.Equal(got, []string{"alice@corp.example.com"}) {
				t.Errorf("alice UPNs %q", got)
			}
			if !slices.Equal(c.EmailAddresses, []string{"alice@example.com"}) || c.Subject.CommonName != "Alice Example" {
				t.Errorf("alice identity %q %q", c.EmailAddresses, c.Subject.CommonName)
			}
		}},
		{name: "bob", chain: 2},
		{name: "frank", chain: 2},
		{name: "carol", chain: 2}, // verifies: revocation is the CRL's job
		{name: "erin", chain: 4, check: func(c *x509.Certificate) {
			if !slices.Equal(c.EmailAddresses, []string{"erin@example.com"}) {
				t.Errorf("erin e-mail %q", c.EmailAddresses)
			}
		}},
		{name: "thermostat-0001", chain: 1, check: func(c *x509.Certificate) {
			s := c.Subject
			if s.CommonName != "thermostat-0001" || s.SerialNumber != "TH-0001" || !slices.Equal(s.OrganizationalUnit, []string{"devices"}) {
				t.Errorf("thermostat subject %v", s)
			}
		}},
		{name: "dave", chain: 2, wantErr: isInvalid(x509.Expired)},
		{name: "noeku", chain: 2, wantErr: isInvalid(x509.IncompatibleUsage), check: func(c *x509.Certificate) {
			if slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
				t.Error("noeku has clientAuth")
			}
		}},
		{name: "mallory-wrongca", chain: 1, wantErr: isUnknownAuthority},
		{name: "mallory-spoofed", chain: 2, wantErr: isUnknownAuthority, check: func(c *x509.Certificate) {
			if !slices.Equal(c.RawIssuer, empInt.RawSubject) {
				t.Error("mallory-spoofed's issuer name differs from employee-int's subject")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf := readCerts(t, tc.name+".pem")
			chain := readCerts(t, tc.name+"-chain.pem")
			if len(leaf) != 1 || len(chain) != tc.chain || !leaf[0].Equal(chain[0]) {
				t.Fatalf("%d leaf, %d chain certificates", len(leaf), len(chain))
			}
			inter := x509.NewCertPool()
			inter.AddCert(empInt)
			for _, c := range chain[1:] {
				inter.AddCert(c)
			}
			_, err := leaf[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			switch {
			case tc.wantErr == nil && err != nil:
				t.Errorf("verify: %v", err)
			case tc.wantErr != nil && !tc.wantErr(err):
				t.Errorf("verify: %v, want the specific failure", err)
			}
			if tc.name != "dave" && leaf[0].NotAfter.Year() < 2040 {
				t.Errorf("expires %v", leaf[0].NotAfter)
			}
			pem, err := os.ReadFile(filepath.Join(pkiDir, tc.name+"-chain.pem"))
			if err != nil {
				t.Fatal(err)
			}
			key, err := os.ReadFile(filepath.Join(pkiDir, tc.name+".key"))
			if err != nil {
				t.Fatal(err)
			}
			readPEM(t, tc.name+".key", "PRIVATE KEY")
			if _, err := tls.X509KeyPair(pem, key); err != nil {
				t.Errorf("key pair: %v", err)
			}
			if tc.check != nil {
				tc.check(leaf[0])
			}
		})
	}
}

func isInvalid(r x509.InvalidReason) func(error) bool {
	return func(err error) bool {
		var e x509.CertificateInvalidError
		return errors.As(err, &e) && e.Reason == r
	}
}

func isUnknownAuthority(err error) bool { return errors.As(err, new(x509.UnknownAuthorityError)) }

func TestTestdataCRLs(t *testing.T) {
	carol := readCerts(t, "carol.pem")[0]
	for _, tc := range []struct {
		crl, issuer string
		covers      []string // certificates the CRL is responsible for
		revoked     []*x509.Certificate
	}{
		{"employee-root.crl", "employee-root.pem", []string{"employee-int.pem", "long-int1.pem"}, nil},
		{"employee-int.crl", "employee-int.pem", []string{"alice.pem", "bob.pem", "carol.pem", "dave.pem", "frank.pem", "noeku.pem"}, []*x509.Certificate{carol}},
		{"device-ca.crl", "device-ca.pem", []string{"thermostat-0001.pem"}, nil},
		{"long-int1.crl", "long-int1.pem", []string{"long-int2.pem"}, nil},
		{"long-int2.crl", "long-int2.pem", []string{"long-int3.pem"}, nil},
		{"long-int3.crl", "long-int3.pem", []string{"erin.pem"}, nil},
	} {
		t.Run(tc.crl, func(t *testing.T) {
			crl := readCRL(t, tc.crl)
			issuer := readCerts(t, tc.issuer)[0]
			if err := crl.CheckSignatureFrom(issuer); err != nil {
				t.Fatal(err)
			}
			if crl.NextUpdate.Year() < 2040 || crl.ThisUpdate.After(time.Now()) {
				t.Errorf("thisUpdate %v nextUpdate %v", crl.ThisUpdate, crl.NextUpdate)
			}
			if len(crl.RevokedCertificateEntries) != len(tc.revoked) {
				t.Fatalf("%d entries, want %d", len(crl.RevokedCertificateEntries), len(tc.revoked))
			}
			for i, c := range tc.revoked {
				if crl.RevokedCertificateEntries[i].SerialNumber.Cmp(c.SerialNumber) != 0 {
					t.Errorf("entry %d: serial %x", i, crl.RevokedCertificateEntries[i].SerialNumber)
				}
			}
			for _, n := range tc.covers {
				c := readCerts(t, n)[0]
				if err := c.CheckSignatureFrom(issuer); err != nil {
					t.Errorf("%s not issued by %s: %v", n, tc.issuer, err)
				}
			}
		})
	}
}

func TestTestdataCAsAndServer(t *testing.T) {
	for _, n := range []string{"employee-root", "employee-int", "device-ca", "server-ca", "long-int1", "long-int2", "long-int3", "rogue-root", "spoof-ca"} {
		c := readCerts(t, n+".pem")
		if len(c) != 1 || !c[0].IsCA || c[0].NotAfter.Year() < 2040 {
			t.Errorf("%s: %d certs, IsCA %v, NotAfter %v", n, len(c), c[0].IsCA, c[0].NotAfter)
		}
	}
	for _, n := range []string{"employee-root", "employee-int", "device-ca"} {
		c, err := os.ReadFile(filepath.Join(pkiDir, n+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		k, err := os.ReadFile(filepath.Join(pkiDir, n+".key"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tls.X509KeyPair(c, k); err != nil {
			t.Errorf("%s key: %v", n, err)
		}
	}
	srv := readCerts(t, "server.pem")
	ca := readCerts(t, "server-ca.pem")[0]
	if len(srv) != 2 || !srv[1].Equal(ca) {
		t.Fatal("server.pem is not leaf then server-ca")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, host := range []string{"gatehouse.test", "localhost", "127.0.0.1", "::1"} {
		if _, err := srv[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("server for %s: %v", host, err)
		}
	}
	if len(srv[0].IPAddresses) != 2 || !srv[0].IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("server IPs %v", srv[0].IPAddresses)
	}
	c, _ := os.ReadFile(filepath.Join(pkiDir, "server.pem"))
	k, _ := os.ReadFile(filepath.Join(pkiDir, "server.key"))
	if _, err := tls.X509KeyPair(c, k); err != nil {
		t.Errorf("server key: %v", err)
	}
	for i, n := range []string{"long-int1", "long-int2", "long-int3"} {
		c := readCerts(t, n+".pem")[0]
		if c.PublicKeyAlgorithm != x509.RSA || c.PublicKey.(interface{ Size() int }).Size() != 512 {
			t.Errorf("%s: not RSA-4096", n)
		}
		if i == 0 {
			if err := c.CheckSignatureFrom(readCerts(t, "employee-root.pem")[0]); err != nil {
				t.Errorf("long-int1 not under employee-root: %v", err)
			}
		}
	}
}

// TestTestdataOpenSSL checks that OpenSSL (as used by eapol_test) reads every
// file. It skips when openssl is missing.
func TestTestdataOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	files, err := os.ReadDir(pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		var args []string
		switch filepath.Ext(f.Name()) {
		case ".pem":
			args = []string{"x509", "-noout", "-in"}
		case ".key":
			args = []string{"pkey", "-noout", "-in"}
		case ".crl":
			args = []string{"crl", "-noout", "-in"}
		default:
			continue
		}
		out, err := exec.Command("openssl", append(args, filepath.Join(pkiDir, f.Name()))...).CombinedOutput()
		if err != nil {
			t.Errorf("openssl %s %s: %v\n%s", args[0], f.Name(), err, out)
		}
	}
}

// TestTestdataFileSet keeps testdata/pki to exactly the documented files.
func TestTestdataFileSet(t *testing.T) {
	want := []string{"README.md", "server.pem", "server.key", "server-ca.pem", "rogue-root.pem", "spoof-ca.pem"}
	for _, n := range []string{"employee-root", "employee-int", "device-ca"} {
		want = append(want, n+".pem", n+".key", n+".crl")
	}
	for _, n := range []string{"long-int1", "long-int2", "long-int3"} {
		want = append(want, n+".pem", n+".crl")
	}
	for _, n := range clients {
		want = append(want, n+".pem", n+"-chain.pem", n+".key")
	}
	files, err := os.ReadDir(pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Name())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("files\n got %q\nwant %q", got, want)
	}
	readme, err := os.ReadFile(filepath.Join(pkiDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range want {
		if n != "README.md" && !strings.Contains(string(readme), "`"+n+"`") {
			t.Errorf("README.md does not describe %s", n)
		}
	}
}
