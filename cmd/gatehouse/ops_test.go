package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy/policytest"
	"github.com/gatehouse/gatehouse/radius/radbench"
)

// opsServe runs `gatehouse serve` on the shipped config with loopback
// ports, metrics on an ephemeral port and a private copy of the LDIF
// directory. It returns the metrics base URL, the RADIUS address, the LDIF
// path, the state dir and a stop function returning serve's exit code.
type opsServe struct {
	metrics, radius, ldif, state string
	logs                         *policytest.SyncBuffer
	stop                         func() int
}

var reMetricsAddr = regexp.MustCompile(`msg="metrics: listening" component=ops addr=(\S+)`)

func startOpsServe(t *testing.T) *opsServe {
	t.Helper()
	return startOpsServeEdit(t, nil)
}

// startOpsServeEdit is startOpsServe with more edits to the config text.
func startOpsServeEdit(t *testing.T, edit func(string) string) *opsServe {
	t.Helper()
	auth := freeUDPPort(t)
	dir := t.TempDir()
	ldif := filepath.Join(dir, "example.ldif")
	b, err := os.ReadFile("../../testdata/directory/example.ldif")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ldif, b, 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	f := writeConfig(t, func(s string) string {
		s = replace(`listen = "127.0.0.1:1812"`, fmt.Sprintf(`listen = "127.0.0.1:%d"`, auth))(s)
		s = replace(`accounting_listen = "127.0.0.1:1813"`, `accounting_listen = "off"`)(s)
		s = regexp.MustCompile(`state_dir = "[^"]*"`).ReplaceAllString(s, `state_dir = "`+filepath.ToSlash(state)+`"`)
		root, _ := filepath.Abs("../..")
		s = replace(`file = "`+root+`/testdata/directory/example.ldif"`, `file = "`+filepath.ToSlash(ldif)+`"`)(s)
		if edit != nil {
			s = edit(s)
		}
		return s
	})
	srv := startServe(t, f, io.Discard)
	o := &opsServe{radius: fmt.Sprintf("127.0.0.1:%d", auth), ldif: ldif, state: state, logs: srv.logs, stop: srv.stop}
	waitFor(t, "metrics listening", func() bool { return reMetricsAddr.MatchString(o.logs.String()) })
	o.metrics = "http://" + reMetricsAddr.FindStringSubmatch(o.logs.String())[1]
	return o
}

func (o *opsServe) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(o.metrics + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// supplicant is an in-process EAP-TLS client with a test PKI certificate.
func supplicant(t *testing.T, addr, name string) (*radbench.Client, *tls.Config) {
	t.Helper()
	pki := "../../testdata/pki/"
	cert, err := tls.LoadX509KeyPair(pki+name+"-chain.pem", pki+name+".key")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	ca, _ := os.ReadFile(pki + "server-ca.pem")
	roots.AppendCertsFromPEM(ca)
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "gatehouse.test"}
	secret, err := os.ReadFile("../../testdata/secrets/radius-localhost")
	if err != nil {
		t.Fatal(err)
	}
	return &radbench.Client{Addr: addr, Secret: []byte(strings.TrimSpace(string(secret))), Timeout: 2 * time.Second, MAFirst: true}, conf
}

// TestServeMetricsAndReadiness authenticates against `gatehouse serve` and
// checks that /metrics counts it, the audit trail records it, and /readyz
// turns 503 when the directory goes away.
func TestServeMetricsAndReadiness(t *testing.T) {
	before := runtime.NumGoroutine()
	o := startOpsServe(t)
	if code, body := o.get(t, "/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	waitFor(t, "/readyz 200", func() bool { code, _ := o.get(t, "/readyz"); return code == 200 })

	c, conf := supplicant(t, o.radius, "alice")
	conf.ClientSessionCache = tls.NewLRUClientSessionCache(1) // a TLS session is kept
	res, err := c.Authenticate(context.Background(), "anonymous", conf)
	if err != nil || !res.Accepted {
		t.Fatalf("alice: accepted=%v err=%v", res != nil && res.Accepted, err)
	}
	_, metrics := o.get(t, "/metrics")
	for _, want := range []string{
		`gatehouse_radius_responses_total{code="access_accept"} 1`,
		`gatehouse_decisions_total{code="allowed",door="wifi",event="authenticate",rule="engineering"} 1`,
		`gatehouse_radius_auth_duration_seconds_count 1`,
		`gatehouse_radius_eap_conversations_completed_total 1`,
		`gatehouse_radius_tls_sessions 1`,
		`gatehouse_radius_tls_resumptions_total 0`,
		`gatehouse_directory_queries_total 1`,
		`gatehouse_directory_query_duration_seconds_count 1`,
		`gatehouse_directory_up 1`,
		`gatehouse_ready{component="radius"} 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(metrics, "alice") || strings.Contains(metrics, "testing123") {
		t.Error("/metrics carries an identity or the secret")
	}

	// The directory goes away: not ready, and /readyz says why.
	if err := os.Remove(o.ldif); err != nil {
		t.Fatal(err)
	}
	code, body := o.get(t, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "directory: file:") || strings.Contains(body, "directory: directory:") {
		t.Errorf("/readyz without the directory: %d %q", code, body)
	}
	if _, m := o.get(t, "/metrics"); !strings.Contains(m, "gatehouse_directory_up 0") {
		t.Error("gatehouse_directory_up is not 0")
	}

	if code := o.stop(); code != exitOK {
		t.Fatalf("serve exited %d\n%s", code, o.logs.String())
	}
	b, err := os.ReadFile(filepath.Join(o.state, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"door":"wifi","event":"authenticate","nas":"localhost"`) ||
		!strings.Contains(string(b), `"outcome":"allow","code":"allowed","rule":"engineering"`) {
		t.Errorf("audit.jsonl:\n%s", b)
	}
	if strings.Contains(string(b), "testing123") {
		t.Error("the shared secret reached the audit trail")
	}
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before+2 })
}

// TestServeShutdownMidHandshake cancels serve while a supplicant is in the
// middle of its TLS handshake: the conversation still ends in an
// Access-Accept (decided and audited), then serve exits 0.
func TestServeShutdownMidHandshake(t *testing.T) {
	o := startOpsServe(t)
	c, conf := supplicant(t, o.radius, "alice")
	cert := conf.Certificates[0]
	conf.Certificates = nil
	inHandshake, release := make(chan struct{}), make(chan struct{})
	conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		close(inHandshake)
		<-release
		return &cert, nil
	}
	type result struct {
		accepted bool
		err      error
	}
	resc := make(chan result, 1)
	go func() {
		res, err := c.Authenticate(context.Background(), "anonymous", conf)
		resc <- result{err == nil && res.Accepted, err}
	}()
	<-inHandshake
	exit := make(chan int, 1)
	go func() { exit <- o.stop() }()
	waitFor(t, "shutdown to begin", func() bool {
		return strings.Contains(o.logs.String(), "radius: shutting down: letting conversations finish")
	})
	close(release)
	if r := <-resc; !r.accepted {
		t.Fatalf("conversation in flight at shutdown: accepted=false err=%v", r.err)
	}
	if code := <-exit; code != exitOK {
		t.Fatalf("serve exited %d\n%s", code, o.logs.String())
	}
	b, err := os.ReadFile(filepath.Join(o.state, "audit.jsonl"))
	if err != nil || !strings.Contains(string(b), `"outcome":"allow"`) {
		t.Errorf("the drained conversation is not in the audit trail (%v):\n%s", err, b)
	}
}
