package main

import (
	"testing"

	"github.com/gatehouse/gatehouse/radius"
)

func TestMemoryLimit(t *testing.T) {
	env := func(v string) func(string) string { return func(string) string { return v } }
	if lim, ok := memoryLimit(env(""), &radius.Config{}); !ok || lim != radius.DefaultMaxSessionBytes+memoryHeadroom {
		t.Errorf("default: %d %v", lim, ok)
	}
	if lim, ok := memoryLimit(env(""), &radius.Config{MaxSessionBytes: 64 << 20}); !ok || lim != 64<<20+memoryHeadroom {
		t.Errorf("64 MiB: %d %v", lim, ok)
	}
	if _, ok := memoryLimit(env("1GiB"), &radius.Config{}); ok {
		t.Error("GOMEMLIMIT overridden")
	}
}
