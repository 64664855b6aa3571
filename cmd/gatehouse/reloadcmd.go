package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// exitHeld is `gatehouse reload`'s exit status when the reload worked but
// the mass-cut guard holds cuts that need confirmation.
const exitHeld = 4

// cmdReload asks the running server (over its control socket) to reload
// its configuration and re-validate both doors, and prints the result; with
// --confirm-cut, it instead releases the cuts the mass-cut guard holds
// under the policy in force. Exit status: 0 done; 1 the reload failed, no
// server runs, or there was nothing to confirm; 4 a cut is held.
func cmdReload(ctx context.Context, args []string, stdout io.Writer) (int, error) {
	fs := newFlags("reload", stdout)
	cfgFile := configFlag(fs)
	confirm := fs.Bool("confirm-cut", false, "release the cuts held by the mass-cut guard under the policy in force (does not re-read the file)")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the server's answer")
	if err := parseFlags(fs, args); err != nil {
		return exitUsage, err
	}
	if fs.NArg() > 0 {
		return exitUsage, &usageError{"reload: unexpected arguments"}
	}
	dir, err := stateDirOf(*cfgFile)
	if err != nil {
		return exitUsage, err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	resp, err := callControl(ctx, dir, controlRequest{Op: "reload", ConfirmCut: *confirm})
	if err != nil {
		if errors.Is(err, errNoServer) {
			return exitFailure, fmt.Errorf("reload: %w; is `gatehouse serve --config %s` running?", err, *cfgFile)
		}
		return exitFailure, fmt.Errorf("reload: %w", err)
	}
	for _, l := range resp.Lines {
		fmt.Fprintln(stdout, l)
	}
	if !resp.OK {
		return exitFailure, fmt.Errorf("reload: %s", resp.Error)
	}
	if resp.Held {
		return exitHeld, nil
	}
	return exitOK, nil
}
