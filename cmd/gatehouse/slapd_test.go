package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

// A private OpenLDAP server loaded with testdata/directory/example.ldif,
// plain ldap:// on loopback (directory/ has the full harness with TLS; its
// test helpers cannot be imported from here).
const (
	slapdBin   = "/usr/sbin/slapd"
	slapaddBin = "/usr/sbin/slapadd"
	ldapBase   = "dc=example,dc=com"
	ldapRootDN = "cn=admin,dc=example,dc=com"
	ldapRootPW = "not-a-real-secret-c41d"
)

type slapd struct {
	addr   string // 127.0.0.1:port
	pwFile string
}

func startSlapd(t *testing.T) *slapd {
	t.Helper()
	for _, tool := range []string{slapdBin, slapaddBin} {
		_, err := os.Stat(tool)
		policytest.RequireInterop(t, err == nil, tool+" not installed")
	}
	dir := t.TempDir()
	root, _ := filepath.Abs("../..")
	conf := filepath.Join(dir, "slapd.conf")
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
include %[2]s/testdata/directory/gatehouse.schema
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 67108864
suffix "%[3]s"
rootdn "%[4]s"
rootpw %[5]s
directory %[1]s/db
index objectClass eq
access to * by * read
`, dir, root, ldapBase, ldapRootDN, ldapRootPW)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(slapaddBin, "-q", "-f", conf, "-l", root+"/testdata/directory/example.ldif").CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &slapd{addr: l.Addr().String(), pwFile: filepath.Join(dir, "bindpw")}
	l.Close()
	if err := os.WriteFile(s.pwFile, []byte(ldapRootPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(slapdBin, "-f", conf, "-d", "0", "-h", "ldap://"+s.addr+"/")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
			return s
		}
		select {
		case <-exited:
			t.Fatalf("slapd exited at start (%v)", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("slapd did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// configure points a config.toml text's [directory] at this server.
func (s *slapd) configure(cfg string) string {
	cfg = replace(`backend = "file"`, `backend = "ldap"`+"\n"+`base_dn = "`+ldapBase+`"`)(cfg)
	return replace("\n[radius]\n", fmt.Sprintf(`
[directory.ldap]
urls = ["ldap://%s"]
insecure_plaintext = true
bind_dn = %q
bind_password_file = %q

[radius]
`, s.addr, ldapRootDN, s.pwFile))(cfg)
}

// modify changes an entry on the server as an admin would.
func (s *slapd) modify(t *testing.T, m *ldap.ModifyRequest) {
	t.Helper()
	c, err := ldap.DialURL("ldap://" + s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(ldapRootDN, ldapRootPW); err != nil {
		t.Fatal(err)
	}
	if err := c.Modify(m); err != nil {
		t.Fatal(err)
	}
}
