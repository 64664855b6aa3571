package directory

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// checkErrorText fails t if an error text repeats a prefix ("directory:
// directory:"), ends in a dangling ":" (a server that sent no message), or
// spans lines.
func checkErrorText(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	s := err.Error()
	parts := strings.Split(s, ": ")
	for i := 1; i < len(parts); i++ {
		if parts[i] == parts[i-1] {
			t.Errorf("%s: %q repeats %q", what, s, parts[i])
		}
	}
	for _, p := range []string{"directory", "check", "search", "bind"} {
		if strings.Count(s, p+": ") > 1 {
			t.Errorf("%s: %q says %q twice", what, s, p+": ")
		}
	}
	if strings.HasSuffix(strings.TrimSpace(s), ":") || strings.ContainsRune(s, '\n') {
		t.Errorf("%s: %q ends in ':' or spans lines", what, s)
	}
}

func TestLDAPErrorText(t *testing.T) {
	for _, tc := range []struct {
		err  *ldap.Error
		want string
	}{
		{&ldap.Error{ResultCode: 49, Err: errors.New("")}, "LDAP result 49 (Invalid Credentials)"},
		{&ldap.Error{ResultCode: 32, Err: errors.New(" ")}, "LDAP result 32 (No Such Object)"},
		{&ldap.Error{ResultCode: 50, Err: errors.New("no write access")}, "LDAP result 50 (Insufficient Access Rights): no write access"},
		{&ldap.Error{ResultCode: 4242}, "LDAP result 4242"},
	} {
		err := readable(tc.err)
		if err.Error() != tc.want {
			t.Errorf("got %q, want %q", err, tc.want)
		}
		if !ldap.IsErrorWithCode(err, tc.err.ResultCode) {
			t.Errorf("%q: result code lost", err)
		}
	}
}

// TestErrorTexts provokes the directory's errors against a real slapd and
// checks each reads `directory: context: detail` once, with no dangling ":".
func TestErrorTexts(t *testing.T) {
	s := startSlapd(t)
	ctx := context.Background()
	badPW := filepath.Join(t.TempDir(), "pw")
	must(t, os.WriteFile(badPW, []byte("wrong"), 0o600))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	dead := "ldap://" + ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"wrong password", func(c *Config) { c.LDAP.BindPasswordFile = badPW }, "LDAP result 49 (Invalid Credentials)"},
		{"wrong base DN", func(c *Config) { c.BaseDN = "dc=nope,dc=com" }, "LDAP result 32 (No Such Object)"},
		{"two dead URLs", func(c *Config) { c.LDAP.URLs = []string{dead, dead + "/"} }, "connection refused; "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDir(t, "ldap", s, tc.mutate)
			cerr := d.Check(ctx)
			checkErrorText(t, "check", cerr)
			if !strings.HasPrefix(cerr.Error(), "directory: check: ") || !strings.Contains(cerr.Error(), tc.want) {
				t.Errorf("check: %q, want directory: check: ... %q", cerr, tc.want)
			}
			_, _, lerr := d.Lookup(ctx, "user", aliceFields)
			checkErrorText(t, "lookup", lerr)
			if !strings.Contains(lerr.Error(), strings.TrimSuffix(tc.want, "; ")) {
				t.Errorf("lookup: %q lacks %q", lerr, tc.want)
			}
			if rerr := d.Ready(); rerr != nil { // the server is up with a wrong base DN
				checkErrorText(t, "ready", rerr)
			}
		})
	}
}
