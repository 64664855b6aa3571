//go:build !unix

package procs

import (
	"errors"
	"time"
)

// processCPU has no implementation here: Run leaves Config.Max in force.
func processCPU() (time.Duration, error) {
	return 0, errors.New("procs: no process CPU clock on this OS")
}
