package radius

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/radius/radbench"
)

// TestRadbenchRun runs the load tool against an in-process server, with the
// test's own pid as the "server" whose CPU is sampled.
func TestRadbenchRun(t *testing.T) {
	s := startServer(t, nil)
	dir := writeClientPEMs(t, s.pki)
	for _, v := range []string{"1.2", "1.3"} {
		var out bytes.Buffer
		res, err := radbench.Run(context.Background(), radbench.Config{
			Addr: s.Addr().String(), Secret: testSecret,
			CertFile: dir + "/alice.pem", KeyFile: dir + "/alice.key", CAFile: dir + "/ca.pem", ServerName: "gatehouse.test",
			Concurrency: 4, Count: 40, TLSVersion: v, ServerPID: os.Getpid(), Progress: -1,
		}, &out)
		if err != nil {
			t.Fatal(err)
		}
		if res.Accepts != 40 || res.Failures != 0 || res.P99 == 0 || res.ServerCPU == 0 {
			t.Errorf("TLS %s: %+v\n%s", v, res, out.String())
		}
		if !strings.Contains(out.String(), "auths 40") {
			t.Errorf("summary: %s", out.String())
		}
	}
	// --groups and --resume: each supplicant resumes its own session
	// after its first login, with the key exchange asked for.
	for _, c := range []struct {
		v     string
		group tls.CurveID
	}{{"1.2", tls.CurveP256}, {"1.3", tls.X25519}, {"1.3", tls.X25519MLKEM768}} {
		var out bytes.Buffer
		res, err := radbench.Run(context.Background(), radbench.Config{
			Addr: s.Addr().String(), Secret: testSecret,
			CertFile: dir + "/alice.pem", KeyFile: dir + "/alice.key", CAFile: dir + "/ca.pem", ServerName: "gatehouse.test",
			Concurrency: 2, Count: 10, TLSVersion: c.v, Resume: true, Groups: []tls.CurveID{c.group}, Progress: -1,
		}, &out)
		if err != nil {
			t.Fatal(err)
		}
		// A resumed TLS 1.2 session reports its original key exchange.
		if res.Accepts != 10 || res.Resumed != 8 || res.Groups[c.group] != 10 || len(res.Groups) != 1 {
			t.Errorf("TLS %s %v resumed: %+v\n%s", c.v, c.group, res, out.String())
		}
	}

	// --rate paces the logins: 12 logins at 40/s take at least 11/40 s,
	// however many supplicants are free.
	t0 := time.Now()
	if res, err := radbench.Run(context.Background(), radbench.Config{
		Addr: s.Addr().String(), Secret: testSecret,
		CertFile: dir + "/alice.pem", KeyFile: dir + "/alice.key",
		Concurrency: 8, Count: 12, Rate: 40, TLSVersion: "1.3", Resume: true, Progress: -1,
	}, io.Discard); err != nil || res.Accepts != 12 {
		t.Fatalf("paced run: %+v %v", res, err)
	}
	if d := time.Since(t0); d < 11*time.Second/40 {
		t.Errorf("12 logins at 40/s took %v", d)
	}

	// A rejected certificate is a reject, not a failure.
	var out bytes.Buffer
	res, err := radbench.Run(context.Background(), radbench.Config{
		Addr: s.Addr().String(), Secret: testSecret, Certificate: s.pki.mallory,
		Concurrency: 2, Count: 4, Progress: -1,
	}, &out)
	if err != nil || res.Rejects != 4 || res.Failures != 0 {
		t.Errorf("mallory: %+v %v", res, err)
	}
}

// TestServe runs a server on GATEHOUSE_RADIUS_SERVE (e.g. 127.0.0.1:18120,
// accounting on the next port) with the shared test PKI and the fake
// authorizer until GATEHOUSE_RADIUS_SERVE_FOR (default 60s) passes: a
// separate server process for radbench's CPU-per-auth figure.
//
//	GATEHOUSE_RADIUS_SERVE=127.0.0.1:18120 go test -run TestServe -v ./radius &
//	GATEHOUSE_RADBENCH_ADDR=127.0.0.1:18120 GATEHOUSE_RADBENCH_PID=<pid of radius.test> \
//	  go test -run TestRadbenchAgainst -v ./radius
func TestServe(t *testing.T) {
	addr := os.Getenv("GATEHOUSE_RADIUS_SERVE")
	if addr == "" {
		t.Skip("GATEHOUSE_RADIUS_SERVE not set")
	}
	d, err := time.ParseDuration(envOr("GATEHOUSE_RADIUS_SERVE_FOR", "60s"))
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(addr)
	pn, _ := strconv.Atoi(port)
	p := getPKI(t)
	// GATEHOUSE_RADIUS_SERVE_MAX_SESSION_BYTES sets MaxSessionBytes (the
	// fragment-flood memory figure).
	budget, _ := strconv.ParseInt(os.Getenv("GATEHOUSE_RADIUS_SERVE_MAX_SESSION_BYTES"), 10, 64)
	s, err := New(Config{
		Listen: addr, AccountingListen: net.JoinHostPort(host, strconv.Itoa(pn+1)),
		Clients:         []ClientConfig{{Name: "lo", Network: "127.0.0.0/8", Secret: testSecret}},
		MaxSessionBytes: budget,
	}, newFakeAuth(p), p.serverTLS(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	t.Logf("serving on %s for %v, pid %d", addr, d, os.Getpid())
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("stats %+v", s.Stats())
}

// TestRadbenchAgainst runs radbench against GATEHOUSE_RADBENCH_ADDR (any
// RADIUS server with EAP-TLS trusting testdata/pki, secret from
// GATEHOUSE_RADBENCH_SECRET or the test secret), with the shared alice
// certificate.
func TestRadbenchAgainst(t *testing.T) {
	addr := os.Getenv("GATEHOUSE_RADBENCH_ADDR")
	if addr == "" {
		t.Skip("GATEHOUSE_RADBENCH_ADDR not set")
	}
	pid, _ := strconv.Atoi(os.Getenv("GATEHOUSE_RADBENCH_PID"))
	conc, _ := strconv.Atoi(envOr("GATEHOUSE_RADBENCH_CONCURRENCY", "8"))
	d, err := time.ParseDuration(envOr("GATEHOUSE_RADBENCH_DURATION", "10s"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := radbench.Run(context.Background(), radbench.Config{
		Addr: addr, Secret: envOr("GATEHOUSE_RADBENCH_SECRET", testSecret),
		CertFile:    pkiDir + "/" + envOr("GATEHOUSE_RADBENCH_CERT", "alice-chain") + ".pem",
		KeyFile:     pkiDir + "/" + envOr("GATEHOUSE_RADBENCH_KEY", "alice") + ".key",
		Concurrency: conc, Duration: d, TLSVersion: os.Getenv("GATEHOUSE_RADBENCH_TLS"),
		ServerPID: pid, Progress: 2 * time.Second, Identity: "alice@example.com",
	}, os.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepts == 0 {
		t.Errorf("no accepts: %+v", res)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
