package main

import (
	"bytes"
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
)

// TestCheckDirectoryErrorText: `check -directory` against an LDAP server
// that refuses names the key step once ("directory: check: <url>: ..."),
// with no repeated prefix.
func TestCheckDirectoryErrorText(t *testing.T) {
	cfg, url := unreachableLDAPConfig(t)
	var so, se bytes.Buffer
	code := run(context.Background(), []string{"check", "-directory", "-config", cfg}, &so, &se)
	msg := se.String()
	if code == exitOK || !strings.HasPrefix(msg, "gatehouse: directory: check: "+url+": ") {
		t.Fatalf("exit %d, stderr %q", code, msg)
	}
	for _, p := range []string{"directory: ", "check: "} {
		if strings.Count(msg, p) != 1 {
			t.Errorf("%q says %q more than once", msg, p)
		}
	}
}

// unreachableLDAPConfig writes the test config with the directory on LDAP
// at url, a loopback port where nothing listens.
func unreachableLDAPConfig(t *testing.T) (cfg, url string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url = "ldap://" + ln.Addr().String()
	ln.Close()
	cfg = writeConfig(t, func(s string) string {
		s = replace(`backend = "file"                          # file (LDIF) | ldap`, `backend = "ldap"`+"\n"+`base_dn = "dc=example,dc=com"`)(s)
		s = regexp.MustCompile(`(?m)^file = ".*example\.ldif"$`).ReplaceAllString(s, "")
		return strings.Replace(s, "timeout = \"5s\"\n", "timeout = \"5s\"\n[directory.ldap]\nurls = [\""+url+"\"]\ninsecure_plaintext = true\n", 1)
	})
	return cfg, url
}
