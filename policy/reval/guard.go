package reval

import (
	"errors"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// Held describes the policy cuts the guard holds at one door.
type Held struct {
	Door       policy.Door
	Count      int // policy cuts held
	Live       int // live items in the run that held them
	TopReasons []ReasonCount
	Since      time.Time // first run that held under this policy
	policy     any
}

// ErrNothingHeld is returned by Confirm when no cut is held under the
// policy in force.
var ErrNothingHeld = errors.New("reval: no cut is held under the policy in force")

func (e *Engine) policyID() any {
	if e.cfg.PolicyID == nil {
		return nil
	}
	return e.cfg.PolicyID()
}

// hold decides whether the run's policy cuts, judged under policy pid,
// are held, and records the door's held state. It logs ERROR when a hold
// begins or its count changes.
func (e *Engine) hold(door policy.Door, rep *Report, pid any) bool {
	mass := rep.Live >= e.cfg.MinPopulation && float64(rep.CutPolicy) > e.cfg.MaxCutFraction*float64(rep.Live)
	e.mu.Lock()
	defer e.mu.Unlock()
	prev, had := e.held[door]
	if !mass || (e.hasConf && e.confirmed == pid) {
		delete(e.held, door)
		if mass {
			e.log.Warn("re-validation: mass cut confirmed by an operator; cutting", "door", door.String(),
				"cuts", rep.CutPolicy, "live", rep.Live, "reasons", reasonsString(rep.TopReasons))
		} else if had {
			e.log.Info("re-validation: no mass cut any more; hold lifted", "door", door.String(), "was_held", prev.Count)
		}
		return false
	}
	h := Held{Door: door, Count: rep.CutPolicy, Live: rep.Live, TopReasons: rep.TopReasons, Since: time.Now(), policy: pid}
	if had && prev.policy == pid {
		h.Since = prev.Since
	}
	e.held[door] = h
	if !had || prev.policy != pid || prev.Count != h.Count {
		e.log.Error("re-validation: mass cut held: the policy would cut more than max_cut_fraction of live access; nothing cut for policy reasons until confirmed with `gatehouse reload --confirm-cut`",
			"door", door.String(), "held", h.Count, "live", h.Live, "max_cut_fraction", e.cfg.MaxCutFraction,
			"reasons", reasonsString(h.TopReasons))
	}
	return true
}

// Held returns the holds in force, by door (empty when nothing is held).
// A hold recorded under a policy that is no longer in force is dropped:
// the next run under the new policy decides afresh.
func (e *Engine) Held() map[policy.Door]Held {
	pid := e.policyID()
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[policy.Door]Held, len(e.held))
	for d, h := range e.held {
		if h.policy == pid {
			out[d] = h
		}
	}
	return out
}

// Confirm releases the held cuts of the policy in force: the next run of
// every door under this policy cuts them. A later, different policy needs
// its own confirmation. It returns what was held, or ErrNothingHeld.
func (e *Engine) Confirm() (map[policy.Door]Held, error) {
	held := e.Held()
	if len(held) == 0 {
		return nil, ErrNothingHeld
	}
	pid := e.policyID()
	e.mu.Lock()
	e.confirmed, e.hasConf = pid, true
	e.mu.Unlock()
	e.log.Warn("re-validation: mass cut confirmed by an operator", "doors", len(held))
	return held, nil
}
