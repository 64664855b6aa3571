package policy

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// CRLFile describes a CRL loaded from a trust.crl file, for alerts:
// metrics, the readiness check and `gatehouse check`.
type CRLFile struct {
	CA         string // subject of the issuing CA
	File       string // the configured file name
	ThisUpdate time.Time
	NextUpdate time.Time // zero when absent
	Entries    int
}

// Expired reports whether the CRL's nextUpdate has passed at now.
func (c CRLFile) Expired(now time.Time) bool {
	return !c.NextUpdate.IsZero() && now.After(c.NextUpdate)
}

// CRLFiles lists the CRLs loaded from trust.crl files: one per issuing CA
// and file (the newest, when a file holds several of one CA), sorted by CA
// and file. The list is bounded by the configuration.
func (p *Policy) CRLFiles() []CRLFile {
	type key struct{ ca, file string }
	newest := map[key]*CRL{}
	for _, l := range p.trust.crls {
		for _, c := range l {
			k := key{c.Issuer.Subject.String(), strings.TrimPrefix(c.Source, "file ")}
			if c.Newer(newest[k]) {
				newest[k] = c
			}
		}
	}
	out := make([]CRLFile, 0, len(newest))
	for k, c := range newest {
		out = append(out, CRLFile{CA: k.ca, File: k.file, ThisUpdate: c.ThisUpdate, NextUpdate: c.NextUpdate, Entries: c.Len()})
	}
	slices.SortFunc(out, func(a, b CRLFile) int { return cmp.Or(cmp.Compare(a.CA, b.CA), cmp.Compare(a.File, b.File)) })
	return out
}
