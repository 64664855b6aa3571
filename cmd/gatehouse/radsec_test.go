package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// radsecConfig adds a RadSec listener and one radsec_client entry (with
// the given TOML lines) to the shipped config.
func radsecConfig(client string) func(string) string {
	return func(s string) string {
		s = replace(`max_sessions = 65536`, "radsec_listen = \"127.0.0.1:0\"\nmax_sessions = 65536")(s)
		return s + "\n[[radius.radsec_client]]\nname = \"aps\"\n" + client + "\n"
	}
}

func TestRadSecConfig(t *testing.T) {
	root, _ := filepath.Abs("../..")
	for _, tc := range []struct {
		name   string
		client string
		want   string // "" = valid
	}{
		// Relative to the config file's directory (the CA is copied there).
		{"valid", "ca_file = \"ap-ca.pem\"\nmatch = [\"DNS:ap-*.example.com\"]", ""},
		{"employee CA", "ca_file = \"" + root + "/testdata/pki/employee-root.pem\"\nmatch = [\"CN:*\"]",
			`config.toml: radius.radsec_client[0] "aps": ca_file ` + root + `/testdata/pki/employee-root.pem holds`},
		{"employee intermediate", "ca_file = \"" + root + "/testdata/pki/employee-int.pem\"\nmatch = [\"CN:*\"]", "an employee CA"},
		{"no match", "ca_file = \"ap-ca.pem\"", `config.toml: radius: radsec_client[0] "aps": match: required`},
		{"bad match", "ca_file = \"ap-ca.pem\"\nmatch = [\"OU:x\"]", `match "OU:x": unknown type`},
		{"missing ca_file", "ca_file = \"nope.pem\"\nmatch = [\"CN:*\"]", `radius.radsec_client[0] "aps": ca_file`},
		{"unknown key", "ca_file = \"ap-ca.pem\"\nmatch = [\"CN:*\"]\nsecret = \"x\"", "radius.radsec_client.secret: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := writeConfig(t, radsecConfig(tc.client))
			ca, err := os.ReadFile(filepath.Join(root, "testdata/pki/server-ca.pem"))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(filepath.Dir(f), "ap-ca.pem"), ca, 0o600)
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{"check", "-config", f}, &out, &errb)
			if tc.want == "" {
				if code != exitOK || !strings.Contains(out.String(), "RadSec 127.0.0.1:0, 1 radsec_client entries") {
					t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
				}
				return
			}
			if code != exitUsage || !strings.Contains(errb.String(), tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant %q", code, errb.String(), tc.want)
			}
		})
	}
}
