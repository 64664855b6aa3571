package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/directory"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/vpn"
)

// TestEnrollCommand runs `gatehouse enroll` against a VPN server built from
// the shipped config (real policy, LDIF directory, mutual TLS on loopback;
// the data plane on netstack so no interface is touched).
func TestEnrollCommand(t *testing.T) {
	cfgFile := writeConfig(t, nil)
	l, err := loadConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := directory.New(l.cfg.Directory, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	auth := policy.NewAuthorizer(l.policy, dir, nil)
	vc := l.cfg.VPN
	vc.Enabled, vc.UseNetstack = true, true
	vc.ListenPort = freeUDPPort(t)
	vc.EnrollListen = "127.0.0.1:0"
	vc.StateDir = filepath.Join(l.cfg.Server.StateDir, "vpn") // where `gatehouse peers` looks
	srv, err := vpn.New(vc, auth, auth.ServerTLS(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-srv.Ready():
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("vpn not ready")
	}
	url := "https://" + srv.EnrollAddr().String()
	pki, _ := filepath.Abs("../../testdata/pki")
	enroll := func(cert string, extra ...string) (int, string, string) {
		out := filepath.Join(t.TempDir(), "wg0.conf")
		args := append([]string{"enroll", "--server", url, "--cert", filepath.Join(pki, cert+".pem"),
			"--key", filepath.Join(pki, strings.TrimSuffix(cert, "-chain")+".key"), "--ca", filepath.Join(pki, "server-ca.pem"), "-o", out}, extra...)
		var so, se bytes.Buffer
		code := run(context.Background(), args, &so, &se)
		return code, out, so.String() + se.String()
	}

	code, out, msg := enroll("alice")
	if code != exitOK {
		t.Fatalf("alice: exit %d: %s", code, msg)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v mode %v", err, fi.Mode())
	}
	conf, _ := os.ReadFile(out)
	for _, want := range []string{"[Interface]", "PrivateKey = ", "Address = 100.96.", "DNS = 10.0.0.53", "[Peer]",
		"Endpoint = vpn.example.com:51820", "AllowedIPs = 10.10.0.0/16, 10.20.0.5/32, 10.0.0.53/32"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	if st := srv.Stats(); st.Peers != 1 {
		t.Errorf("peers = %d", st.Peers)
	}
	// Denied certificates get an error an employee can act on, and exit 1.
	for _, c := range []struct{ cert, want string }{
		{"carol", "revoked"},
		{"frank", "not permitted"},
		{"thermostat-0001", "not permitted"}, // the thermostats rule gives no VPN access
	} {
		code, _, msg := enroll(c.cert)
		if code != exitFailure || !strings.Contains(msg, c.want) {
			t.Errorf("%s: exit %d, %q; want exit %d and %q", c.cert, code, msg, exitFailure, c.want)
		}
	}
	// The admin's view: `gatehouse peers` lists who is enrolled.
	var so, se bytes.Buffer
	if code := run(context.Background(), []string{"peers", "-config", cfgFile}, &so, &se); code != exitOK ||
		!strings.Contains(so.String(), "alice@corp.example.com  engineering  100.96.") || !strings.Contains(so.String(), "1 peers") {
		t.Errorf("peers: exit %d\n%s%s", code, so.String(), se.String())
	}
	// --qr prints a terminal QR code after writing the file.
	code, _, msg = enroll("bob-chain", "--qr")
	if code != exitOK || !strings.Contains(msg, "█") {
		t.Errorf("bob --qr: exit %d\n%s", code, msg)
	}
}
