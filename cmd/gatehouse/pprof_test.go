package main

import (
	"strings"
	"testing"
)

// TestPprofOptIn: the profiler is not served unless server.pprof = true,
// and then only on the metrics listener.
func TestPprofOptIn(t *testing.T) {
	for _, on := range []bool{false, true} {
		var edit func(string) string
		if on {
			edit = replace("pprof = false", "pprof = true")
		}
		o := startOpsServeEdit(t, edit)
		code, body := o.get(t, "/debug/pprof/")
		switch {
		case !on && code != 404:
			t.Errorf("pprof off: /debug/pprof/ answered %d", code)
		case on && (code != 200 || !strings.Contains(body, "goroutine")):
			t.Errorf("pprof on: /debug/pprof/ answered %d %.80q", code, body)
		}
		if code, _ := o.get(t, "/debug/pprof/cmdline"); on != (code == 200) {
			t.Errorf("pprof %v: /debug/pprof/cmdline answered %d", on, code)
		}
		if code := o.stop(); code != exitOK {
			t.Fatalf("serve exited %d", code)
		}
	}
}
