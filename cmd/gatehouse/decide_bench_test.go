package main

import (
	"context"
	"testing"

	"github.com/gatehouse/gatehouse/directory"
	"github.com/gatehouse/gatehouse/policy"
)

// BenchmarkDecideWarmDirectory is the cached decision path as served: the
// shipped policy and the LDIF directory with a warm cache, chain
// verification excluded (policy.BenchmarkVerify covers it).
func BenchmarkDecideWarmDirectory(b *testing.B) {
	l, err := loadConfig("../../config.toml")
	if err != nil {
		b.Fatal(err)
	}
	dir, err := directory.New(l.cfg.Directory, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer dir.Close()
	a := policy.NewAuthorizer(l.policy, dir, nil)
	chain, err := readChain("../../testdata/pki/alice.pem")
	if err != nil {
		b.Fatal(err)
	}
	v := l.policy.Verify(chain)
	ctx := context.Background()
	if d := a.Decide(ctx, l.policy, v); !d.Allowed {
		b.Fatal(d.Reason)
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := a.Decide(ctx, l.policy, v); !d.Allowed {
			b.Fatal(d.Reason)
		}
	}
}
