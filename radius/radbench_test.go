package radius

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

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
