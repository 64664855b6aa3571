package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/revocation"
)

// CRL alerts. A CRL past its nextUpdate fails every certificate of its CA
// under trust.revocation = "require" (fail closed), so its approach is made
// visible: metrics for every CRL in use (files and URLs), a WARN log within
// crlWarnBefore of nextUpdate and an ERROR once it has passed, /readyz
// "trust: degraded: …" naming the CA while one is expired, and warnings
// from `gatehouse check` within checkWarnBefore.
const (
	crlWarnBefore   = 24 * time.Hour
	checkWarnBefore = 7 * 24 * time.Hour
	crlWatchEvery   = time.Minute
)

// crlInUse is one CRL the trust step uses, from a file or a URL.
type crlInUse struct {
	CA, Source string // Source: "file /path" or the URL
	NextUpdate time.Time
}

// crlsInUse lists the CRLs of the current policy's trust.crl files and the
// last good ones fetched from [[trust.ca_source]] URLs.
func crlsInUse(files []policy.CRLFile, st revocation.Stats) []crlInUse {
	var out []crlInUse
	for _, f := range files {
		out = append(out, crlInUse{CA: f.CA, Source: "file " + f.File, NextUpdate: f.NextUpdate})
	}
	for _, c := range st.CRLs {
		if !c.ThisUpdate.IsZero() {
			out = append(out, crlInUse{CA: c.CA, Source: c.URL, NextUpdate: c.NextUpdate})
		}
	}
	return out
}

func (c crlInUse) expired(now time.Time) bool {
	return !c.NextUpdate.IsZero() && now.After(c.NextUpdate)
}

func (c crlInUse) String() string {
	return fmt.Sprintf("%s (%s, nextUpdate %s)", c.CA, c.Source, c.NextUpdate.UTC().Format(time.RFC3339))
}

// degradedError is a readiness finding that does not make the node unready:
// it still serves (the CA concerned fails closed), /readyz prints it and
// answers 200 unless another check fails.
type degradedError struct{ msg string }

func (e *degradedError) Error() string { return "degraded: " + e.msg }

// expiredCRLs is the readiness finding for CRLs past nextUpdate, or nil.
func expiredCRLs(crls []crlInUse, now time.Time) error {
	var bad []string
	for _, c := range crls {
		if c.expired(now) {
			bad = append(bad, c.String())
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return &degradedError{"CRL expired for " + strings.Join(bad, "; ")}
}

// crlWatch logs each CRL's approach to nextUpdate once per level (WARN
// within crlWarnBefore, ERROR when passed) and per CRL version.
type crlWatch struct {
	crls   func() []crlInUse
	log    *slog.Logger
	logged map[string]int // CA, source and nextUpdate → level logged (1 soon, 2 expired)
}

func newCRLWatch(crls func() []crlInUse, log *slog.Logger) *crlWatch {
	return &crlWatch{crls: crls, log: log, logged: map[string]int{}}
}

func (w *crlWatch) check(now time.Time) {
	seen := map[string]bool{}
	for _, c := range w.crls() {
		if c.NextUpdate.IsZero() {
			continue
		}
		k := c.CA + "\x00" + c.Source + "\x00" + c.NextUpdate.String()
		seen[k] = true
		level := 0
		switch {
		case c.expired(now):
			level = 2
		case c.NextUpdate.Sub(now) <= crlWarnBefore:
			level = 1
		}
		if level <= w.logged[k] {
			continue
		}
		w.logged[k] = level
		if level == 2 {
			w.log.Error("CRL expired: certificates of this CA fail revocation checks until a newer CRL is loaded",
				"ca", c.CA, "source", c.Source, "next_update", c.NextUpdate)
		} else {
			w.log.Warn("CRL expires within 24h: publish and load a newer one",
				"ca", c.CA, "source", c.Source, "next_update", c.NextUpdate, "in", c.NextUpdate.Sub(now).Round(time.Minute))
		}
	}
	for k := range w.logged {
		if !seen[k] {
			delete(w.logged, k) // replaced by a newer CRL or removed from the config
		}
	}
}

// runCRLWatch checks the CRLs in use now and every crlWatchEvery until ctx
// is done.
func (o *ops) runCRLWatch(ctx context.Context, s *servers) error {
	w := newCRLWatch(func() []crlInUse { return crlsInUse(s.auth.Policy().CRLFiles(), s.rev.Stats()) }, o.log)
	t := time.NewTicker(crlWatchEvery)
	defer t.Stop()
	for {
		w.check(time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// crlFileLabel is the url label of a CRL file's metrics: a file: URL.
func crlFileLabel(file string) string {
	if abs, err := filepath.Abs(file); err == nil {
		file = abs
	}
	return "file://" + filepath.ToSlash(file)
}

// checkCRLWarnings returns `gatehouse check`'s warnings about CRL files
// expired or expiring within checkWarnBefore.
func checkCRLWarnings(files []policy.CRLFile, now time.Time) []string {
	var out []string
	for _, f := range files {
		switch {
		case f.NextUpdate.IsZero():
		case f.Expired(now):
			out = append(out, fmt.Sprintf("warning: CRL %s of %s expired %s (nextUpdate); load a newer one", f.File, f.CA, f.NextUpdate.UTC().Format(time.RFC3339)))
		case f.NextUpdate.Sub(now) <= checkWarnBefore:
			out = append(out, fmt.Sprintf("warning: CRL %s of %s expires %s (in %s)", f.File, f.CA, f.NextUpdate.UTC().Format(time.RFC3339), f.NextUpdate.Sub(now).Round(time.Minute)))
		}
	}
	return out
}
