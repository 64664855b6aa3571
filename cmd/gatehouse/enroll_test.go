package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/directory"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/store/postgres"
	"github.com/gatehouse/gatehouse/vpn"
	"github.com/gatehouse/gatehouse/vpn/pgstore"
)

// startVPN runs a VPN server built from the shipped config (real policy,
// LDIF directory, mutual TLS on loopback; the data plane on netstack so no
// interface is touched) and returns it with the config file's path.
func startVPN(t testing.TB) (*vpn.Server, string) { return startVPNWith(t, nil) }

// startVPNWith is startVPN with before called on the server before Run.
func startVPNWith(t testing.TB, before func(*vpn.Server)) (*vpn.Server, string) {
	cfgFile := writeConfig(t, nil)
	l, err := loadConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := directory.New(l.cfg.Directory, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dir.Close)
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
	if before != nil {
		before(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	})
	select {
	case <-srv.Ready():
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("vpn not ready")
	}
	return srv, cfgFile
}

// TestEnrollCommand runs `gatehouse enroll` against a VPN server built from
// the shipped config.
func TestEnrollCommand(t *testing.T) {
	srv, cfgFile := startVPN(t)
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
	if want := "wg-quick up " + out + "\n"; !strings.Contains(msg, want) { // out is absolute
		t.Errorf("alice: output %q lacks %q", msg, want)
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
		// A CA the server does not trust (and does not list in its
		// CertificateRequest hints): the client still presents its
		// certificate, so the server's own message reaches the user.
		{"mallory-wrongca", "gatehouse: vpn: enroll: refused (403): certificate not issued by a trusted authority\n"},
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

func TestWGQuickArg(t *testing.T) {
	for in, want := range map[string]string{
		"wg0.conf":              "./wg0.conf",
		"/etc/wireguard/a.conf": "/etc/wireguard/a.conf",
		"./x.conf":              "./x.conf",
		"sub/x.conf":            "sub/x.conf",
		"../x.conf":             "../x.conf",
	} {
		if got := wgQuickArg(in); got != want {
			t.Errorf("wgQuickArg(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkEnroll measures enrollments through the whole stack in process:
// a new mutual-TLS connection per enrollment, the real policy and LDIF
// directory, an address lease and the peer added to wireguard-go. Each
// enrollment re-enrolls alice's certificate with a new key (one device, one
// peer), so the old peer is replaced every time. Client and server share
// the machine's cores; the client's half of each TLS handshake is counted.
func BenchmarkEnroll(b *testing.B) { benchmarkEnroll(b, nil) }

// BenchmarkEnrollPostgres is BenchmarkEnroll with the registry in
// PostgreSQL (the bar: at least 0.8× the file store's rate).
func BenchmarkEnrollPostgres(b *testing.B) {
	pg := pgtest.Start(b)
	db, err := postgres.Open(postgres.Config{DSN: pg.CreateDatabase("gh_bench")}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	// pgtest runs without fsync; the file store fsyncs every record:
	// compare like with like.
	for _, q := range []string{"ALTER SYSTEM SET fsync = on", "SELECT pg_reload_conf()"} {
		if _, err := db.Pool().Exec(context.Background(), q); err != nil {
			b.Fatal(err)
		}
	}
	benchmarkEnroll(b, func(s *vpn.Server) { s.SetStore(pgstore.New(db, pgstore.Config{Site: "hq"}, nil)) })
}

func benchmarkEnroll(b *testing.B, before func(*vpn.Server)) {
	srv, _ := startVPNWith(b, before)
	url := "https://" + srv.EnrollAddr().String() + "/v1/enroll"
	cert, err := tls.LoadX509KeyPair("../../testdata/pki/alice-chain.pem", "../../testdata/pki/alice.key")
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	ca, _ := policy.ReadCertificates("../../testdata/pki/server-ca.pem")
	roots.AddCert(ca[0])
	tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "gatehouse.test"}}
	b.ReportAllocs()
	b.SetParallelism(4) // enrollments from several clients at once, as in production
	var clients atomic.Int32
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// Each client from its own address, as in production (one
		// address would meet enroll_max_conns_per_ip).
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 2, byte(clients.Add(1)))}
		tr := tr.Clone()
		tr.DialContext = (&net.Dialer{LocalAddr: src}).DialContext
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for pb.Next() {
			k, err := vpn.GenerateKey()
			if err != nil {
				b.Error(err)
				return
			}
			body := `{"public_key":"` + k.Public().String() + `"}`
			resp, err := hc.Post(url, "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			// 409 is a lost race: another client's key replaced ours first.
			if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusConflict {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "enrollments/s")
}
