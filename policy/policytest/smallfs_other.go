//go:build !linux

package policytest

import "testing"

// SmallFS needs Linux (mount tmpfs); elsewhere the test is skipped, or
// failed under GATEHOUSE_REQUIRE_INTEROP=1.
func SmallFS(t testing.TB, size int) string {
	t.Helper()
	RequireInterop(t, false, "a small tmpfs needs Linux")
	return ""
}

// Fill is SmallFS's companion; it is not reached off Linux.
func Fill(t testing.TB, dir, name string) string {
	t.Helper()
	t.Fatal("policytest.Fill: Linux only")
	return ""
}
