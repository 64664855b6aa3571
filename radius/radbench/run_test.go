package radbench

import (
	"context"
	"crypto/tls"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestProcCPU(t *testing.T) {
	// Burn CPU until the counter moves past one tick: on a loaded machine
	// 30 ms of wall time may be less than one tick of CPU time.
	var d time.Duration
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		end := time.Now().Add(30 * time.Millisecond)
		for time.Now().Before(end) {
		}
		if d, err = ProcCPU(os.Getpid()); err != nil || d > 0 {
			break
		}
	}
	if err != nil || d <= 0 {
		t.Fatalf("ProcCPU = %v, %v", d, err)
	}
	if _, err := ProcCPU(-1); err == nil {
		t.Error("no error for a missing process")
	}
}

func TestRunValidates(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Addr: "127.0.0.1:1"},
		{Addr: "127.0.0.1:1", Secret: "s", TLSVersion: "1.1"},
		{Addr: "127.0.0.1:1", Secret: "s", CertFile: "/nonexistent.pem", KeyFile: "/nonexistent.key"},
	} {
		if _, err := Run(context.Background(), cfg, io.Discard); err == nil || !strings.HasPrefix(err.Error(), "radbench: ") {
			t.Errorf("%+v: err = %v", cfg, err)
		}
	}
}

func TestCheckReplyMA(t *testing.T) {
	if err := CheckReplyMA(make([]byte, 20), make([]byte, 16), []byte("s")); err == nil {
		t.Error("accepted a reply without Message-Authenticator")
	}
}

func TestParseGroups(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []tls.CurveID
		err  bool
	}{
		{"", nil, false},
		{"x25519", []tls.CurveID{tls.X25519}, false},
		{"X25519MLKEM768, x25519", []tls.CurveID{tls.X25519MLKEM768, tls.X25519}, false},
		{"p256,secp384r1,p521", []tls.CurveID{tls.CurveP256, tls.CurveP384, tls.CurveP521}, false},
		{"x448", nil, true},
		{"x25519,x25519", nil, true},
		{"x25519,", nil, true},
	} {
		got, err := ParseGroups(c.in)
		if (err != nil) != c.err || !slices.Equal(got, c.want) {
			t.Errorf("ParseGroups(%q) = %v, %v", c.in, got, err)
		}
	}
}
