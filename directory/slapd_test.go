package directory

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// This file is the slapd harness: a private OpenLDAP server per test,
// loaded with testdata/directory/example.ldif.

const (
	slapdBin    = "/usr/sbin/slapd"
	slapaddBin  = "/usr/sbin/slapadd"
	exampleLDIF = "../testdata/directory/example.ldif"
	schemaFile  = "../testdata/directory/gatehouse.schema"
	baseDN      = "dc=example,dc=com"
	rootDN      = "cn=admin,dc=example,dc=com"
	rootPW      = "not-a-real-secret-7f3a"
)

// requireInterop skips the test when tool is missing, or fails it when
// GATEHOUSE_REQUIRE_INTEROP=1.
func requireInterop(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := os.Stat(tool); err != nil {
			if os.Getenv("GATEHOUSE_REQUIRE_INTEROP") == "1" {
				t.Fatalf("%s is required (GATEHOUSE_REQUIRE_INTEROP=1): %v", tool, err)
			}
			t.Skipf("%s not available: %v", tool, err)
		}
	}
}

// slapd is one private OpenLDAP server.
type slapd struct {
	t         testing.TB
	dir       string
	conf      string
	ldapAddr  string // 127.0.0.1:port
	ldapsAddr string
	caFile    string // CA that issued the server certificate
	wrongCA   string // an unrelated CA
	pwFile    string // rootdn password
	cmd       *exec.Cmd
	exited    chan struct{}
}

func (s *slapd) ldapURL() string  { return "ldap://" + s.ldapAddr }
func (s *slapd) ldapsURL() string { return "ldaps://" + s.ldapsAddr }

// config returns a Config for this server over ldap:// + StartTLS.
func (s *slapd) config(mode string) Config {
	return Config{
		Backend:   "ldap",
		BaseDN:    baseDN,
		GroupMode: mode,
		Timeout:   Duration{2 * time.Second},
		LDAP: LDAPConfig{
			URLs:             []string{s.ldapURL()},
			StartTLS:         true,
			CAFile:           s.caFile,
			ServerName:       "localhost",
			BindDN:           rootDN,
			BindPasswordFile: s.pwFile,
			PoolSize:         2,
		},
	}
}

// startSlapd builds, loads and starts a server; it is stopped at cleanup.
func startSlapd(t testing.TB) *slapd {
	t.Helper()
	requireInterop(t, slapdBin, slapaddBin)
	dir := t.TempDir()
	s := &slapd{t: t, dir: dir}
	s.caFile, s.wrongCA = mintTLS(t, dir)
	s.pwFile = filepath.Join(dir, "bindpw")
	must(t, os.WriteFile(s.pwFile, []byte(rootPW+"\n"), 0o600))
	schema, err := filepath.Abs(schemaFile)
	must(t, err)
	must(t, os.Mkdir(filepath.Join(dir, "db"), 0o700))
	s.conf = filepath.Join(dir, "slapd.conf")
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
include %[2]s
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload refint
TLSCACertificateFile %[1]s/ca.pem
TLSCertificateFile %[1]s/server.pem
TLSCertificateKeyFile %[1]s/server.key
database mdb
maxsize 67108864
suffix "%[3]s"
rootdn "%[4]s"
rootpw %[5]s
directory %[1]s/db
index objectClass eq
index uid,mail,cn,userPrincipalName,memberUid,serialNumber eq
index member,uniqueMember eq
overlay memberof
overlay refint
refint_attributes member uniqueMember
access to * by * read
`, dir, schema, baseDN, rootDN, rootPW)
	must(t, os.WriteFile(s.conf, []byte(conf), 0o600))
	ldif, err := filepath.Abs(exampleLDIF)
	must(t, err)
	if out, err := exec.Command(slapaddBin, "-q", "-f", s.conf, "-l", ldif).CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}
	s.ldapAddr, s.ldapsAddr = freePort(t), freePort(t)
	s.start()
	t.Cleanup(s.kill)
	s.populateMemberOf()
	return s
}

// start runs slapd in the foreground and waits until it accepts.
func (s *slapd) start() {
	s.t.Helper()
	cmd := exec.Command(slapdBin, "-f", s.conf, "-d", "0",
		"-h", "ldap://"+s.ldapAddr+"/ ldaps://"+s.ldapsAddr+"/")
	must(s.t, cmd.Start())
	s.cmd = cmd
	exited := make(chan struct{})
	s.exited = exited
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.ldapAddr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			s.t.Fatalf("slapd exited at start (%v)", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("slapd did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops slapd (SIGKILL, as a crash) and waits for it.
func (s *slapd) kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT)
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// pause stops slapd (SIGSTOP, as a hung server) and waits until every one
// of its threads is stopped: kill(2) returns before they are, and a busy
// machine may let slapd answer a request sent just after it.
func (s *slapd) pause() {
	s.t.Helper()
	must(s.t, s.cmd.Process.Signal(syscall.SIGSTOP))
	pid := s.cmd.Process.Pid
	deadline := time.Now().Add(30 * time.Second)
	for !allStopped(pid) {
		if time.Now().After(deadline) {
			s.t.Fatalf("slapd (pid %d) not stopped 30s after SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *slapd) resume() { s.cmd.Process.Signal(syscall.SIGCONT) }

// allStopped reports whether every thread of process pid is in state T
// (stopped), per /proc/pid/task/*/stat.
func allStopped(pid int) bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			return false
		}
		// pid (comm) state ...: comm may hold spaces or parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return true
}

// admin opens a rootdn connection over plain ldap:// (test setup only).
func (s *slapd) admin() *ldap.Conn {
	s.t.Helper()
	c, err := ldap.DialURL(s.ldapURL())
	must(s.t, err)
	must(s.t, c.Bind(rootDN, rootPW))
	return c
}

// populateMemberOf makes the memberof overlay compute memberOf, which
// slapadd (tool mode) skips: every groupOfNames' member values are
// replaced by themselves.
func (s *slapd) populateMemberOf() {
	c := s.admin()
	defer c.Close()
	res, err := c.Search(ldap.NewSearchRequest(baseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=groupOfNames)", []string{"member"}, nil))
	must(s.t, err)
	for _, e := range res.Entries {
		m := ldap.NewModifyRequest(e.DN, nil)
		m.Replace("member", e.GetAttributeValues("member"))
		if err := c.Modify(m); err != nil {
			s.t.Fatalf("populate memberOf of %s: %v", e.DN, err)
		}
	}
}

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().String()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// mintTLS writes ca.pem, server.pem and server.key (SAN localhost,
// 127.0.0.1) into dir and returns the CA file and an unrelated CA file.
func mintTLS(t testing.TB, dir string) (caFile, wrongCAFile string) {
	t.Helper()
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(t, err)
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(time.Now().UnixNano()),
			Subject:               pkix.Name{CommonName: name},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		must(t, err)
		cert, err := x509.ParseCertificate(der)
		must(t, err)
		return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	ca, caKey, caPEM := newCA("gatehouse test LDAP CA")
	_, _, wrongPEM := newCA("gatehouse test LDAP CA") // same name, other key
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano() + 1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	must(t, err)
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	must(t, err)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, b, 0o600))
		return p
	}
	write("server.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write("server.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}))
	return write("ca.pem", caPEM), write("wrong-ca.pem", wrongPEM)
}

// TestSlapdHarness checks the fixture itself: memberOf is populated.
func TestSlapdHarness(t *testing.T) {
	s := startSlapd(t)
	c := s.admin()
	defer c.Close()
	res, err := c.Search(ldap.NewSearchRequest(baseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(uid=alice)", []string{"memberOf"}, nil))
	must(t, err)
	if len(res.Entries) != 1 {
		t.Fatalf("alice: %d entries", len(res.Entries))
	}
	got := strings.Join(res.Entries[0].GetAttributeValues("memberOf"), ";")
	if !strings.Contains(got, "cn=backend") || !strings.Contains(got, "cn=loop-a") {
		t.Fatalf("alice memberOf = %q", got)
	}
}
