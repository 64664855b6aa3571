package revocation

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/policytest"
)

func wantRev(t *testing.T, d policy.Decision, code policy.Code, status, source string) {
	t.Helper()
	if d.Code != code {
		t.Fatalf("code %v (%s), want %v; revocation %+v", d.Code, d.Reason, code, d.Revocation)
	}
	if len(d.Revocation) == 0 {
		t.Fatalf("no revocation results; %s", d.Reason)
	}
	r := d.Revocation[0]
	if r.Status != status || !strings.Contains(r.Source, source) {
		t.Fatalf("leaf revocation %+v, want status %q from %q", r, status, source)
	}
}

func TestCRLFromURLAndRefresh(t *testing.T) {
	k := newPKI(t, "")
	srv := newCRLServer(t, k.inter.MustCRL(t))
	p := compile(t, k.config(srv.URL+"/inter.crl", "", ""))
	chk := newChecker(t, Config{StateDir: t.TempDir()}, p)

	// Before any fetch: nothing known for the intermediate → deny.
	d := k.verify(p, chk)
	wantRev(t, d, policy.CodeRevocationUnknown, "unknown", "")
	if !strings.Contains(d.Revocation[0].Detail, "no CRL fetched yet from "+srv.URL) {
		t.Fatalf("detail %q", d.Revocation[0].Detail)
	}
	if err := chk.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	d = k.verify(p, chk)
	wantRev(t, d, policy.CodeAllowed, "good", "crl "+srv.URL+"/inter.crl (fetched 20")
	if r := d.Revocation[1]; r.Status != "good" || r.Source != "crl file "+k.rootCRL {
		t.Fatalf("intermediate %+v", r)
	}

	// The CA revokes alice; after a refresh she is revoked.
	srv.set(policytest.CRLPEM(k.inter.MustCRL(t, k.alice.Cert)))
	if err := chk.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantRev(t, k.verify(p, chk), policy.CodeRevoked, "revoked", srv.URL)
}

func TestCRLBadFetchKeepsLastGood(t *testing.T) {
	k := newPKI(t, "")
	good := k.inter.MustCRL(t)
	srv := newCRLServer(t, good)
	p := compile(t, k.config(srv.URL, "", ""))
	chk := newChecker(t, Config{}, p)
	if err := chk.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := chk.CRL(k.inter.Cert, srv.URL)

	// Same subject, other key: a forger's CRL that revokes alice.
	subj := k.inter.Cert.Subject
	forger := k.root.MustIntermediate(t, "x", policytest.CAOptions{Subject: &subj})
	other := policytest.NewCA(t, "Other CA")
	now := time.Now()
	expired, err := k.inter.CRL([]*x509.Certificate{k.alice.Cert}, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	future, err := k.inter.CRL([]*x509.Certificate{k.alice.Cert}, now.Add(time.Hour), now.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		body []byte
		want string
	}{
		{"bad signature", forger.MustCRL(t, k.alice.Cert), "signature does not verify"},
		{"other issuer", other.MustCRL(t, k.alice.Cert), "is not"},
		{"expired", expired, "CRL expired"},
		{"not yet valid", future, "not valid yet"},
		{"garbage", []byte("<html>captive portal</html>"), "revocation: CRL"},
		{"certificate", k.inter.PEM, `PEM block 1 is "CERTIFICATE", want "X509 CRL"`},
		{"two CRLs", append(policytest.CRLPEM(k.inter.MustCRL(t)), policytest.CRLPEM(k.inter.MustCRL(t, k.alice.Cert))...), "holds 2 CRLs, want one per source"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv.set(tt.body)
			err := chk.Refresh(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Refresh: %v, want %q", err, tt.want)
			}
			if chk.CRL(k.inter.Cert, srv.URL) != before {
				t.Fatal("last good CRL replaced")
			}
			wantRev(t, k.verify(p, chk), policy.CodeAllowed, "good", srv.URL)
		})
	}
	// An older CRL than the one in use is refused too (no rollback).
	newer, err := k.inter.CRL(nil, now.Add(-time.Minute), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	srv.set(newer)
	if err := chk.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.set(good)
	if err := chk.Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "older than the one in use") {
		t.Fatalf("rollback: %v", err)
	}
}

func TestCRLDiskCopy(t *testing.T) {
	k := newPKI(t, "")
	srv := newCRLServer(t, k.inter.MustCRL(t, k.alice.Cert))
	p := compile(t, k.config(srv.URL, "", ""))
	state := filepath.Join(t.TempDir(), "revocation")
	chk := newChecker(t, Config{StateDir: state}, p)
	if err := chk.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(state, "*"))
	if len(files) != 1 || !strings.HasSuffix(files[0], ".der") {
		t.Fatalf("state dir holds %v", files)
	}

	// Restart without network: the disk copy answers.
	srv.Close()
	chk2 := newChecker(t, Config{StateDir: state}, p)
	wantRev(t, k.verify(p, chk2), policy.CodeRevoked, "revoked", srv.URL+" (fetched ")
	if err := chk2.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh with the server down succeeded")
	}
	wantRev(t, k.verify(p, chk2), policy.CodeRevoked, "revoked", srv.URL)

	// A disk copy that does not verify (another CA's file) is not used.
	if err := os.WriteFile(files[0], policytest.NewCA(t, "Other").MustCRL(t), 0o600); err != nil {
		t.Fatal(err)
	}
	chk3 := newChecker(t, Config{StateDir: state}, p)
	wantRev(t, k.verify(p, chk3), policy.CodeRevocationUnknown, "unknown", "")

	// An expired disk copy is loaded, but means "unknown" (alice is not on it).
	now := time.Now()
	old, err := k.inter.CRL(nil, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files[0], old, 0o600); err != nil {
		t.Fatal(err)
	}
	chk4 := newChecker(t, Config{StateDir: state}, p)
	d := k.verify(p, chk4)
	wantRev(t, d, policy.CodeRevocationUnknown, "unknown", srv.URL)
	if !strings.Contains(d.Revocation[0].Detail, "CRL expired") {
		t.Fatalf("detail %q", d.Revocation[0].Detail)
	}
	st := chk4.Stats()
	if len(st.CRLs) != 1 || st.CRLs[0].URL != srv.URL || st.CRLs[0].Entries != 0 || !st.CRLs[0].NextUpdate.Before(now) {
		t.Fatalf("stats %+v", st)
	}
}

func TestCRLServerDownNoDiskCopy(t *testing.T) {
	k := newPKI(t, "")
	srv := newCRLServer(t, nil)
	srv.setDown(true)
	for _, tt := range []struct {
		mode string
		code policy.Code
	}{{"require", policy.CodeRevocationUnknown}, {"best_effort", policy.CodeAllowed}} {
		cfg := k.config(srv.URL, "", "")
		cfg.Trust.Revocation = tt.mode
		p := compile(t, cfg)
		chk := newChecker(t, Config{StateDir: t.TempDir()}, p)
		if err := chk.Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "503") {
			t.Fatalf("Refresh: %v", err)
		}
		wantRev(t, k.verify(p, chk), tt.code, "unknown", "")
	}
}

func TestRunRefreshesOnSchedule(t *testing.T) {
	before := runtime.NumGoroutine()
	k := newPKI(t, "")
	srv := newCRLServer(t, k.inter.MustCRL(t))
	cfg := k.config(srv.URL, "", "")
	cfg.Trust.CRLRefresh = policy.Duration{Duration: time.Second}
	p := compile(t, cfg)
	chk := newChecker(t, Config{StateDir: t.TempDir()}, p)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- chk.Run(ctx) }()
	waitFor(t, "first fetch", func() bool { return k.verify(p, chk).Code == policy.CodeAllowed })
	srv.set(k.inter.MustCRL(t, k.alice.Cert))
	waitFor(t, "scheduled refresh", func() bool { return k.verify(p, chk).Code == policy.CodeRevoked })

	// A reload that drops the source: the CRL is gone with it.
	p2 := compile(t, k.config("", "http://127.0.0.1:1/ocsp", ""))
	chk.Update(p2)
	if chk.CRL(k.inter.Cert, srv.URL) != nil {
		t.Fatal("CRL of a removed source still served")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	srv.Close()
	checkNoLeak(t, before)
}

func TestNextFetch(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	crl := func(this, next time.Duration) *policy.CRL {
		return &policy.CRL{ThisUpdate: now.Add(this), NextUpdate: now.Add(next)}
	}
	for _, tt := range []struct {
		refresh time.Duration
		l       *policy.CRL
		want    time.Duration
	}{
		{time.Hour, crl(-time.Hour, 7*24*time.Hour), time.Hour},                            // long-lived CRL: every refresh
		{time.Hour, crl(0, 30*time.Minute), 27 * time.Minute},                              // short CRL: before nextUpdate
		{time.Hour, crl(-24*time.Hour, time.Second), 30 * time.Second},                     // about to expire: not hammered
		{time.Hour, &policy.CRL{ThisUpdate: now}, time.Hour},                               // no nextUpdate
		{10 * time.Second, crl(-24*time.Hour, time.Second), 10 * time.Second},              // short refresh wins the floor
		{24 * time.Hour, crl(-12*time.Hour, 12*time.Hour), 12*time.Hour - 144*time.Minute}, // a tenth of 24h before
	} {
		if got := nextFetch(now, tt.refresh, tt.l).Sub(now); got != tt.want {
			t.Errorf("refresh %v, CRL %v..%v: next in %v, want %v", tt.refresh, tt.l.ThisUpdate.Sub(now), tt.l.NextUpdate.Sub(now), got, tt.want)
		}
	}
	for n, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 4: 40 * time.Second, 10: 5 * time.Minute, 100: 5 * time.Minute} {
		if got := retryAfter(n, time.Hour); got != want {
			t.Errorf("retryAfter(%d) = %v, want %v", n, got, want)
		}
	}
}
