package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/policytest"
	"github.com/gatehouse/gatehouse/policy/revocation"
)

// crlPolicy compiles a policy trusting a fresh CA whose CRL file has the
// given nextUpdate.
func crlPolicy(t *testing.T, nextUpdate time.Time) (*policy.Policy, *policytest.CA) {
	t.Helper()
	ca := policytest.MustRoot(t, "Alert Test CA")
	dir := t.TempDir()
	caFile, crlFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.crl")
	der, err := ca.CRL(nil, nextUpdate.Add(-7*24*time.Hour), nextUpdate)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(caFile, policytest.CertPEM(ca.Cert), 0o600)
	os.WriteFile(crlFile, policytest.CRLPEM(der), 0o600)
	p, err := policy.Compile(&policy.Config{Trust: policy.TrustConfig{ClientCA: []string{caFile}, CRL: []string{crlFile}}})
	if err != nil {
		t.Fatal(err)
	}
	return p, ca
}

// TestCRLWatch: a CRL file 12 h from its nextUpdate logs one WARN naming
// its CA; once past, one ERROR, and readiness reports trust degraded (but
// still ready); `check` warns within 7 days.
func TestCRLWatch(t *testing.T) {
	now := time.Now()
	p, ca := crlPolicy(t, now.Add(12*time.Hour))
	var logs policytest.SyncBuffer
	w := newCRLWatch(func() []crlInUse { return crlsInUse(p.CRLFiles(), revocation.Stats{}) }, slog.New(slog.NewTextHandler(&logs, nil)))
	w.check(now)
	w.check(now.Add(time.Minute))
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), ca.Cert.Subject.String()) {
		t.Fatalf("want one WARN naming the CA:\n%s", logs.String())
	}
	if err := expiredCRLs(w.crls(), now); err != nil {
		t.Fatalf("not expired yet: %v", err)
	}
	later := now.Add(13 * time.Hour)
	w.check(later)
	w.check(later.Add(time.Minute))
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Fatalf("want one ERROR once expired:\n%s", logs.String())
	}
	err := expiredCRLs(w.crls(), later)
	if err == nil || !isDegraded(err) || !strings.HasPrefix(err.Error(), "degraded: ") || !strings.Contains(err.Error(), ca.Cert.Subject.String()) {
		t.Fatalf("readiness finding %v", err)
	}

	if got := checkCRLWarnings(p.CRLFiles(), now); len(got) != 1 || !strings.Contains(got[0], "expires") {
		t.Errorf("check warnings %q", got)
	}
	if got := checkCRLWarnings(p.CRLFiles(), later); len(got) != 1 || !strings.Contains(got[0], "expired") {
		t.Errorf("check warnings %q", got)
	}
	if got := checkCRLWarnings(p.CRLFiles(), now.Add(-8*24*time.Hour)); len(got) != 0 {
		t.Errorf("check warnings 8 days ahead: %q", got)
	}
}

// writeCRL writes a CRL of the testdata CA name (its key is in testdata)
// with the given dates, and returns its path.
func writeCRL(t *testing.T, name string, thisUpdate, nextUpdate time.Time) string {
	t.Helper()
	ca, err := policytest.LoadCA("../../testdata/pki/"+name+".pem", "../../testdata/pki/"+name+".key")
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.CRL(nil, thisUpdate, nextUpdate)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), name+".crl")
	if err := os.WriteFile(f, policytest.CRLPEM(der), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestServeExpiredCRL runs serve with the device CA's CRL file expired and
// the employee intermediate's 12 h from nextUpdate: /readyz answers 200
// with "trust: degraded" naming the device CA, the log has the WARN and
// the ERROR, /metrics has both files' nextUpdate, and `check` warns.
func TestServeExpiredCRL(t *testing.T) {
	now := time.Now()
	expired := writeCRL(t, "device-ca", now.Add(-48*time.Hour), now.Add(-time.Hour))
	soon := writeCRL(t, "employee-int", now.Add(-time.Hour), now.Add(12*time.Hour))
	edit := func(s string) string {
		root, _ := filepath.Abs("../..")
		s = replace(`"`+root+`/testdata/pki/device-ca.crl"`, `"`+filepath.ToSlash(expired)+`"`)(s)
		return replace(`"`+root+`/testdata/pki/employee-int.crl"`, `"`+filepath.ToSlash(soon)+`"`)(s)
	}

	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"check", "-config", writeConfig(t, edit)}, &out, &errb); code != exitOK {
		t.Fatalf("check: %d %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "warning: CRL "+expired) || !strings.Contains(out.String(), "warning: CRL "+soon) {
		t.Errorf("check output:\n%s", out.String())
	}

	o := startOpsServeEdit(t, edit)
	code, body := o.get(t, "/readyz")
	if code != http.StatusOK || !strings.Contains(body, "trust: degraded: CRL expired for CN=Gatehouse Test Device CA,O=gatehouse test") || strings.Contains(body, "Employee Issuing CA") {
		t.Errorf("/readyz: %d %q", code, body)
	}
	_, m := o.get(t, "/metrics")
	for _, f := range []string{expired, soon} {
		if !strings.Contains(m, fmt.Sprintf(`url="file://%s"`, filepath.ToSlash(f))) {
			t.Errorf("/metrics has no series for %s", f)
		}
	}
	waitFor(t, "CRL log lines", func() bool {
		l := o.logs.String()
		return strings.Contains(l, "level=WARN msg=\"CRL expires within 24h") && strings.Contains(l, "level=ERROR msg=\"CRL expired")
	})
	if code := o.stop(); code != exitOK {
		t.Fatalf("serve exited %d", code)
	}
}
