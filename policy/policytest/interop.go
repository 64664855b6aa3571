package policytest

import (
	"os"
	"os/exec"
	"testing"
)

// RequireInterop guards a test that needs something outside Go — an
// external tool, root, network namespaces. When ok is false the test is
// skipped, or failed when GATEHOUSE_REQUIRE_INTEROP=1 (CI sets it), so a
// missing tool can never turn an interop test green by skipping it there.
func RequireInterop(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("GATEHOUSE_REQUIRE_INTEROP") == "1" {
		t.Fatalf("%s, and GATEHOUSE_REQUIRE_INTEROP=1", why)
	}
	t.Skip(why)
}

// RequireTool returns the path of an external tool, guarded as
// RequireInterop.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	RequireInterop(t, err == nil, name+" not installed")
	return p
}
