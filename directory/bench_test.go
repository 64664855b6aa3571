package directory

import (
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkLookupCached is the hot path: a cache hit.
func BenchmarkLookupCached(b *testing.B) {
	d, err := New(Config{Backend: "file", File: exampleLDIF}, nil)
	must(b, err)
	ctx := context.Background()
	fields := map[string]string{"id": "alice@corp.example.com", "upn": "alice@corp.example.com", "email": "alice@example.com", "cn": "Alice Example"}
	if _, _, err := d.Lookup(ctx, "user", fields); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := d.Lookup(ctx, "user", fields); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupFileUncached evaluates the filter over the example file.
func BenchmarkLookupFileUncached(b *testing.B) {
	d, err := New(Config{Backend: "file", File: exampleLDIF}, nil)
	must(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := d.LookupNoCache(context.Background(), "user", aliceFields); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupLDAP measures uncached lookups of alice (nested three deep
// plus a cycle) against a local slapd per group mode, reporting latency
// percentiles and searches per lookup.
func BenchmarkLookupLDAP(b *testing.B) {
	s := startSlapd(b)
	for _, mode := range []string{"member", "memberof", "uniquemember", "memberuid"} {
		b.Run(mode, func(b *testing.B) {
			cfg := s.config(mode)
			cfg.LDAP.PoolSize = 1
			d, err := New(cfg, nil)
			must(b, err)
			defer d.Close()
			ctx := context.Background()
			if _, _, err := d.LookupNoCache(ctx, "user", aliceFields); err != nil {
				b.Fatal(err)
			}
			q0 := d.Stats().Queries
			var lat []time.Duration
			for b.Loop() {
				start := time.Now()
				if _, _, err := d.LookupNoCache(ctx, "user", aliceFields); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(d.Stats().Queries-q0)/float64(len(lat)), "queries/lookup")
		})
	}
}
