package reval

import "testing"

// TestTrigger: requests coalesce; a run that starts after a request serves
// it, so the loop does not run again for it; a request made after a run
// started is still pending.
func TestTrigger(t *testing.T) {
	tr := NewTrigger()
	received := func() bool {
		select {
		case <-tr.C():
			return true
		default:
			return false
		}
	}
	if tr.Pending() || received() {
		t.Fatal("pending before any request")
	}
	tr.Fire()
	tr.Fire() // coalesces
	if !tr.Pending() {
		t.Fatal("not pending after Fire")
	}
	// An explicit run (gatehouse reload) starts before the loop gets to it.
	tr.Start()
	if !received() || received() {
		t.Fatal("two requests did not coalesce into one wake-up")
	}
	if tr.Pending() {
		t.Fatal("a request served by a run that started after it is still pending: the loop would run again")
	}
	// A request after a run started needs a run of its own.
	tr.Fire()
	if !received() || !tr.Pending() {
		t.Fatal("request after a run's start not pending")
	}
	tr.Start()
	if tr.Pending() {
		t.Fatal("pending after its run started")
	}
}
