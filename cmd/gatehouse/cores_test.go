package main

import (
	"runtime"
	"strings"
	"testing"
)

// TestServeCores runs serve with server.cores = "adaptive" (the shipped
// config) and "all": adaptive starts idle on one core, exports its state,
// and gives the process every core back when it stops; all changes
// nothing and exports nothing.
func TestServeCores(t *testing.T) {
	max := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(max)
	o := startOpsServe(t)
	if max > 1 {
		waitFor(t, "one core while idle", func() bool { return runtime.GOMAXPROCS(0) == 1 })
	}
	_, m := o.get(t, "/metrics")
	for _, want := range []string{"gatehouse_cores_in_use 1\n", "gatehouse_cores_max " + itoa(max) + "\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	o.stop()
	if got := runtime.GOMAXPROCS(0); got != max {
		t.Errorf("after serve: GOMAXPROCS %d, want %d", got, max)
	}

	o = startOpsServeEdit(t, replace(`cores = "adaptive"`, `cores = "all"`))
	_, m = o.get(t, "/metrics")
	if strings.Contains(m, "gatehouse_cores_") {
		t.Error(`cores = "all" exports gatehouse_cores_*`)
	}
	if got := runtime.GOMAXPROCS(0); got != max {
		t.Errorf(`cores = "all": GOMAXPROCS %d, want %d`, got, max)
	}
	o.stop()
}
