package main

import (
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/gatehouse/gatehouse/radius"
)

// memoryHeadroom is what the process may use beyond the RADIUS
// conversations' budget (radius.max_session_bytes): the rest of the server
// and the garbage collector's slack.
const memoryHeadroom = 128 << 20

// memoryLimit is the soft memory limit for the Go runtime: the RADIUS
// conversation budget plus memoryHeadroom, unless GOMEMLIMIT is set (then
// false). Without it the garbage collector lets the heap grow to twice the
// live data (GOGC=100), and a fragment flood that fills the budget would
// take twice the budget in RAM.
func memoryLimit(getenv func(string) string, rc *radius.Config) (int64, bool) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, false
	}
	b := rc.MaxSessionBytes
	if b <= 0 {
		b = radius.DefaultMaxSessionBytes
	}
	return b + memoryHeadroom, true
}

// setMemoryLimit applies memoryLimit.
func setMemoryLimit(rc *radius.Config, log *slog.Logger) {
	if lim, ok := memoryLimit(os.Getenv, rc); ok {
		debug.SetMemoryLimit(lim)
		log.Debug("memory limit", "bytes", lim)
	}
}
