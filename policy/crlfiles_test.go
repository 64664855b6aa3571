package policy

import (
	"strings"
	"testing"
	"time"
)

func TestCRLFiles(t *testing.T) {
	c := testConfig()
	p, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	got := p.CRLFiles()
	if len(got) != len(c.Trust.CRL) {
		t.Fatalf("%d CRL files, want %d: %+v", len(got), len(c.Trust.CRL), got)
	}
	for i, f := range got {
		if f.CA == "" || !strings.HasSuffix(f.File, ".crl") || f.ThisUpdate.IsZero() || f.NextUpdate.Before(f.ThisUpdate) {
			t.Errorf("CRL file %+v", f)
		}
		if i > 0 && got[i-1].CA > f.CA {
			t.Errorf("not sorted by CA: %+v", got)
		}
		if !f.Expired(f.NextUpdate.Add(time.Second)) || f.Expired(f.NextUpdate) {
			t.Errorf("Expired around nextUpdate %v", f.NextUpdate)
		}
	}
}
