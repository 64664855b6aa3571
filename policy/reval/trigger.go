package reval

import "sync/atomic"

// Trigger asks a door's loop for a run soon (after a policy reload) without
// blocking the caller. Requests that arrive while one is pending coalesce,
// and a request is served by any run that starts after it — an explicit
// one (`gatehouse reload` re-validates itself) included — so the loop does
// not run again for a request that is already served: such a late extra
// run could act on a cut an operator confirmed after the explicit run, and
// the operator's run would then find nothing left to report.
//
// The zero value is not usable; make one with NewTrigger.
type Trigger struct {
	c      chan struct{} // capacity 1: a pending request
	asked  atomic.Uint64 // requests so far
	served atomic.Uint64 // requests made before the latest run started
}

// NewTrigger returns a Trigger with no request pending.
func NewTrigger() *Trigger {
	return &Trigger{c: make(chan struct{}, 1)}
}

// Fire requests a run and returns at once.
func (t *Trigger) Fire() {
	t.asked.Add(1)
	select {
	case t.c <- struct{}{}:
	default:
	}
}

// C receives when a request may be pending; the loop then checks Pending
// under its run lock.
func (t *Trigger) C() <-chan struct{} { return t.c }

// Start marks every request made so far as served. A run calls it, holding
// the lock that serializes the door's runs, before it looks at its items.
func (t *Trigger) Start() { t.served.Store(t.asked.Load()) }

// Pending reports whether a request was made that no run started since has
// served. Call it holding the door's run lock.
func (t *Trigger) Pending() bool { return t.asked.Load() > t.served.Load() }
