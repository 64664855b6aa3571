// Command genpki writes the shared test PKI committed in testdata/pki.
//
// Run it through go generate in policy/policytest:
//
//	go run ./genpki -out ../../testdata/pki
//
// Certificates are valid from 2025-01-01 to 2045-01-01 (dave's expired on
// 2025-06-01); CRLs are issued now and next updated on 2045-01-01. Keys are
// fresh each run, so regenerating changes every file.
package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

var (
	notBefore = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter  = time.Date(2045, 1, 1, 0, 0, 0, 0, time.UTC)
	expired   = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
)

func main() {
	out := flag.String("out", "testdata/pki", "output directory")
	flag.Parse()
	if err := run(*out, time.Now().UTC().Truncate(time.Second).Add(-time.Hour)); err != nil {
		log.Fatal(err)
	}
}

// writer collects files and their README lines.
type writer struct {
	dir    string
	readme []string
	err    error
}

func (w *writer) file(name string, data []byte, desc string) {
	if w.err != nil {
		return
	}
	w.err = writeFile(filepath.Join(w.dir, name), data)
	w.readme = append(w.readme, fmt.Sprintf("- `%s`: %s", name, desc))
}

// writeFile writes one output file: private keys (*.key) readable by the
// owner only (0600), everything else 0644. The mode is set before the data
// is written, so a rerun over an existing 0644 key (open keeps an existing
// file's mode) never holds a new key world-readable.
func writeFile(path string, data []byte) error {
	mode := os.FileMode(0o644)
	if strings.HasSuffix(path, ".key") {
		mode = 0o600
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (w *writer) ca(name string, ca *policytest.CA, desc string, withKey bool) {
	w.file(name+".pem", ca.PEM, desc)
	if withKey {
		k, err := ca.KeyPEM()
		if err != nil {
			w.err = errors.Join(w.err, err)
			return
		}
		w.file(name+".key", k, "private key of "+name+".pem (PKCS#8)")
	}
}

func (w *writer) crl(name string, ca *policytest.CA, revoked []*x509.Certificate, thisUpdate time.Time, desc string) {
	der, err := ca.CRL(revoked, thisUpdate, notAfter)
	if err != nil {
		w.err = errors.Join(w.err, err)
		return
	}
	w.file(name, policytest.CRLPEM(der), desc)
}

func (w *writer) leaf(name string, l *policytest.Leaf, desc string) {
	w.file(name+".pem", l.CertPEM, desc)
	w.file(name+"-chain.pem", l.ChainPEM, name+".pem then its intermediates (no root)")
	w.file(name+".key", l.KeyPEM, "private key of "+name+".pem (PKCS#8)")
}

func run(dir string, thisUpdate time.Time) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	caOpts := func(bits int) policytest.CAOptions {
		return policytest.CAOptions{RSABits: bits, NotBefore: notBefore, NotAfter: notAfter}
	}
	must := func(ca *policytest.CA, err error) *policytest.CA {
		if err != nil {
			log.Fatal(err)
		}
		return ca
	}
	issue := func(ca *policytest.CA, o policytest.LeafOptions) *policytest.Leaf {
		if o.NotBefore.IsZero() {
			o.NotBefore = notBefore
		}
		if o.NotAfter.IsZero() {
			o.NotAfter = notAfter
		}
		l, err := ca.Issue(o)
		if err != nil {
			log.Fatal(err)
		}
		return l
	}

	empRoot := must(policytest.NewRoot("Gatehouse Test Employee Root CA", caOpts(0)))
	empInt := must(empRoot.Intermediate("Gatehouse Test Employee Issuing CA", caOpts(0)))
	devCA := must(policytest.NewRoot("Gatehouse Test Device CA", caOpts(0)))
	srvCA := must(policytest.NewRoot("Gatehouse Test Server CA", caOpts(0)))
	long1 := must(empRoot.Intermediate("Gatehouse Test Long Chain CA 1", caOpts(4096)))
	long2 := must(long1.Intermediate("Gatehouse Test Long Chain CA 2", caOpts(4096)))
	long3 := must(long2.Intermediate("Gatehouse Test Long Chain CA 3", caOpts(4096)))
	rogue := must(policytest.NewRoot("Rogue Root CA", caOpts(0)))
	// The spoofing CA copies employee-int's subject and issuer names, but
	// its key and its issuer's key are not employee-int's and employee-root's.
	fakeRoot := must(policytest.NewRoot("", policytest.CAOptions{Subject: &empRoot.Cert.Subject, NotBefore: notBefore, NotAfter: notAfter}))
	spoof := must(fakeRoot.Intermediate("", policytest.CAOptions{Subject: &empInt.Cert.Subject, NotBefore: notBefore, NotAfter: notAfter}))

	alice := issue(empInt, policytest.LeafOptions{CN: "Alice Example", UPNs: []string{"alice@corp.example.com"}, Emails: []string{"alice@example.com"}})
	bob := issue(empInt, policytest.LeafOptions{CN: "Bob Example", Emails: []string{"bob@example.com"}})
	frank := issue(empInt, policytest.LeafOptions{CN: "Frank Example", Emails: []string{"frank@example.com"}})
	thermo := issue(devCA, policytest.LeafOptions{CN: "thermostat-0001", SerialNumber: "TH-0001", OU: []string{"devices"}})
	carol := issue(empInt, policytest.LeafOptions{CN: "Carol Example", Emails: []string{"carol@example.com"}})
	dave := issue(empInt, policytest.LeafOptions{CN: "Dave Example", Emails: []string{"dave@example.com"}, NotAfter: expired})
	aliceID := policytest.LeafOptions{CN: "Alice Example", UPNs: []string{"alice@corp.example.com"}, Emails: []string{"alice@example.com"}}
	malWrong := issue(rogue, aliceID)
	malSpoof := issue(spoof, aliceID)
	noeku := issue(empInt, policytest.LeafOptions{CN: "Noeku Example", Emails: []string{"noeku@example.com"}, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	erin := issue(long3, policytest.LeafOptions{CN: "Erin Example", Emails: []string{"erin@example.com"}})
	server := issue(srvCA, policytest.LeafOptions{
		CN: "gatehouse.test", IsServer: true,
		DNS: []string{"gatehouse.test", "localhost"},
		IPs: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	})

	w := &writer{dir: dir}
	w.ca("employee-root", empRoot, "employee root CA (trust anchor for users)", true)
	w.ca("employee-int", empInt, "employee issuing CA under employee-root; issues alice, bob, carol, dave, frank, noeku", true)
	w.ca("device-ca", devCA, "device root CA (trust anchor for devices); issues thermostat-0001", true)
	w.ca("server-ca", srvCA, "server root CA; issues server.pem (RADIUS/enrollment server certificate)", false)
	w.file("server.pem", policytest.CertPEM(server.Cert, srvCA.Cert), "server certificate (CN/SAN DNS gatehouse.test, localhost, IP 127.0.0.1, ::1; EKU serverAuth) then server-ca")
	w.file("server.key", server.KeyPEM, "private key of server.pem (PKCS#8)")
	w.ca("long-int1", long1, "RSA-4096 CA under employee-root (long chain, 1 of 3)", false)
	w.ca("long-int2", long2, "RSA-4096 CA under long-int1 (long chain, 2 of 3)", false)
	w.ca("long-int3", long3, "RSA-4096 CA under long-int2 (long chain, 3 of 3); issues erin", false)
	w.ca("rogue-root", rogue, "unconfigured root CA that issued mallory-wrongca (never trust it)", false)
	w.ca("spoof-ca", spoof, "CA with employee-int's exact subject and issuer names but another key; issued mallory-spoofed", false)

	w.crl("employee-root.crl", empRoot, nil, thisUpdate, "CRL by employee-root (covers employee-int, long-int1), revokes nothing")
	w.crl("employee-int.crl", empInt, []*x509.Certificate{carol.Cert}, thisUpdate, "CRL by employee-int, revokes carol")
	w.crl("device-ca.crl", devCA, nil, thisUpdate, "CRL by device-ca, revokes nothing")
	w.crl("long-int1.crl", long1, nil, thisUpdate, "CRL by long-int1 (covers long-int2), revokes nothing")
	w.crl("long-int2.crl", long2, nil, thisUpdate, "CRL by long-int2 (covers long-int3), revokes nothing")
	w.crl("long-int3.crl", long3, nil, thisUpdate, "CRL by long-int3 (covers erin), revokes nothing")

	w.leaf("alice", alice, "user Alice Example: UPN alice@corp.example.com, e-mail alice@example.com (employee-int)")
	w.leaf("bob", bob, "user Bob Example: e-mail bob@example.com (employee-int)")
	w.leaf("frank", frank, "user Frank Example: e-mail frank@example.com, valid but in no group (employee-int)")
	w.leaf("thermostat-0001", thermo, "device CN thermostat-0001, subject serialNumber TH-0001, OU devices (device-ca)")
	w.leaf("carol", carol, "user Carol Example: e-mail carol@example.com, revoked in employee-int.crl (employee-int)")
	w.leaf("dave", dave, "user Dave Example: e-mail dave@example.com, expired 2025-06-01 (employee-int)")
	w.leaf("mallory-wrongca", malWrong, "claims alice's identity (CN, UPN, e-mail) but issued by rogue-root")
	w.leaf("mallory-spoofed", malSpoof, "claims alice's identity but issued by spoof-ca (employee-int's name, wrong key); its chain file carries spoof-ca")
	w.leaf("noeku", noeku, "user Noeku Example: e-mail noeku@example.com, EKU serverAuth only (no clientAuth) (employee-int)")
	w.leaf("erin", erin, "user Erin Example: e-mail erin@example.com, ECDSA leaf under long-int3; erin-chain.pem = erin, long-int3, long-int2, long-int1 (many KB)")
	if w.err != nil {
		return w.err
	}

	slices.Sort(w.readme)
	readme := "# Shared test PKI\n\n" +
		"Generated by `go generate ./policy/policytest` (policy/policytest/genpki); do not edit by hand.\n" +
		"All PEM, ECDSA P-256 unless noted; keys are unencrypted PKCS#8 (`PRIVATE KEY`); CRLs are PEM `X509 CRL`.\n" +
		"Certificates are valid 2025-01-01 to 2045-01-01 unless noted; CRLs' nextUpdate is 2045-01-01.\n" +
		"Subjects have O=" + policytest.Organization + ". Every non-root CA certificate is covered by its issuer's CRL.\n\n" +
		strings.Join(w.readme, "\n") + "\n"
	return os.WriteFile(filepath.Join(dir, "README.md"), []byte(readme), 0o644)
}
