package revocation_test

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/revocation"
)

// Example shows how a server wires a Checker: attach it to the Authorizer,
// run it next to the servers, and tell it about each new policy.
func Example() {
	var (
		ctx      = context.Background()
		p        *policy.Policy // from policy.Compile
		dir      policy.Directory
		stateDir = "/var/lib/gatehouse"
		logger   = slog.Default()
	)
	if p == nil {
		return // (compile a real policy here)
	}
	chk, err := revocation.New(revocation.Config{StateDir: filepath.Join(stateDir, "revocation")}, p, logger.With("component", "revocation"))
	if err != nil {
		panic(err)
	}
	auth := policy.NewAuthorizer(p, dir, logger)
	auth.SetRevocation(chk)
	go chk.Run(ctx) // returns when ctx is done, after its goroutines exit

	// On reload, with the new policy p2:
	//	chk.Update(p2)
	//	auth.Swap(p2)
	// Output:
}
