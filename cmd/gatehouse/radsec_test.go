package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	layeh "layeh.com/radius"

	"github.com/gatehouse/gatehouse/policy/policytest"
	"github.com/gatehouse/gatehouse/radius"
	"github.com/gatehouse/gatehouse/radius/radbench"
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
			`radius.radsec_client[0] "aps": ca_file ` + root + `/testdata/pki/employee-root.pem holds`},
		{"employee intermediate", "ca_file = \"" + root + "/testdata/pki/employee-int.pem\"\nmatch = [\"CN:*\"]", "an employee CA"},
		{"no match", "ca_file = \"ap-ca.pem\"", `radius.radsec_client[0]: "aps": match: required`},
		{"bad match", "ca_file = \"ap-ca.pem\"\nmatch = [\"OU:x\"]", `match "OU:x": unknown type`},
		{"missing ca_file", "ca_file = \"nope.pem\"\nmatch = [\"CN:*\"]", `radius.radsec_client[0] "aps": ca_file`},
		{"unknown key", "ca_file = \"ap-ca.pem\"\nmatch = [\"CN:*\"]\nsecret = \"x\"", "radius.radsec_client[0].secret: unknown key"},
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

// TestServeRadSec runs `gatehouse serve` with RadSec on: an access point's
// certificate from its own CA gets a Status-Server answered under the
// secret "radsec", with gatehouse's RADIUS server certificate (from
// trust.server_cert, through policy.Authorizer); an employee's
// certificate is refused.
func TestServeRadSec(t *testing.T) {
	root, _ := filepath.Abs("../..")
	ca := policytest.NewCA(t, "AP CA")
	ap := ca.MustIssue(t, policytest.LeafOptions{CN: "ap-1", DNS: []string{"ap-1.example.com"}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	auth, acct := freeUDPPort(t), freeUDPPort(t)
	f := writeConfig(t, func(s string) string {
		s = replace(`listen = "127.0.0.1:1812"`, fmt.Sprintf(`listen = "127.0.0.1:%d"`, auth))(s)
		s = replace(`accounting_listen = "127.0.0.1:1813"`, fmt.Sprintf(`accounting_listen = "127.0.0.1:%d"`, acct))(s)
		s = radsecConfig("ca_file = \"ap-ca.pem\"\nmatch = [\"DNS:ap-*.example.com\"]")(s)
		return strings.Replace(s, `radsec_listen = "127.0.0.1:0"`, `radsec_listen = "`+addr+`"`, 1)
	})
	if err := os.WriteFile(filepath.Join(filepath.Dir(f), "ap-ca.pem"), ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, f, nil)
	serverCA, err := os.ReadFile(filepath.Join(root, "testdata/pki/server-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(serverCA)
	dialStatus := func(cert tls.Certificate) ([]byte, error) {
		conf := &tls.Config{RootCAs: roots, ServerName: "gatehouse.test", Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, conf)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		req := layeh.New(layeh.CodeStatusServer, []byte("radsec"))
		b, err := radbench.EncodeRequest(req)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(b); err != nil {
			return nil, err
		}
		reply := make([]byte, 4096)
		if _, err := io.ReadFull(c, reply[:4]); err != nil {
			return nil, err
		}
		n := int(reply[2])<<8 | int(reply[3])
		if n < 20 || n > len(reply) {
			return nil, fmt.Errorf("bad length %d", n)
		}
		if _, err := io.ReadFull(c, reply[4:n]); err != nil {
			return nil, err
		}
		if !layeh.IsAuthenticResponse(reply[:n], b, []byte("radsec")) {
			return nil, fmt.Errorf("bad Response Authenticator")
		}
		return reply[:n], nil
	}
	r, err := dialStatus(ap.TLSCertificate())
	if err != nil || r[0] != byte(layeh.CodeAccessAccept) {
		t.Fatalf("access point: %v %v\n%s", err, r, srv.logs.String())
	}
	alice, err := tls.LoadX509KeyPair(filepath.Join(root, "testdata/pki/alice-chain.pem"), filepath.Join(root, "testdata/pki/alice.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dialStatus(alice); err == nil {
		t.Fatal("employee certificate answered over RadSec")
	}
	waitFor(t, "refusal logged", func() bool { return strings.Contains(srv.logs.String(), "radius: radsec: connection refused") })
	srv.stopClean(t)
}

// TestRadSecCollector: the RadSec metrics lint clean and carry the counts.
func TestRadSecCollector(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newRadSecCollector(func() radius.RadSecStats {
		return radius.RadSecStats{Open: 3, Accepted: 10, Refused: 2, OverLimit: 1, FramingError: 4, IdleClosed: 5, SlowPeer: 6}
	}))
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	want := `
# HELP gatehouse_radius_radsec_closed_total RadSec connections closed by gatehouse, by reason: framing (Length outside 20..4096, truncated packet), idle (radsec_idle_timeout), slow_peer (replies not read).
# TYPE gatehouse_radius_radsec_closed_total counter
gatehouse_radius_radsec_closed_total{reason="framing"} 4
gatehouse_radius_radsec_closed_total{reason="idle"} 5
gatehouse_radius_radsec_closed_total{reason="slow_peer"} 6
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gatehouse_radius_radsec_closed_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "gatehouse_radius_radsec_connections_total"); err != nil || n != 3 {
		t.Errorf("connections_total series %d, %v", n, err)
	}
}
