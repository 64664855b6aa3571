// Package procs fits the number of threads that run Go code at once
// (GOMAXPROCS) to the process's load: one while the work fits in one core,
// all of them as soon as it does not.
//
// Why: a server that answers many small requests (a RADIUS round is tens of
// microseconds of work) hands each one from goroutine to goroutine. Each
// hand-off with an idle P wakes a thread on another core, which spins
// looking for the work, usually finds nothing and sleeps again
// (golang/go#43997). On a gatehouse serving resumed EAP-TLS logins that is
// 12–20% of the server's CPU: measured on the same load with GOMAXPROCS=1
// and 2 (README, "Performance"). With one P the hand-off stays on the thread that
// made it. Under load the Ps are busy, the wake-ups find work, and the
// controller gives the runtime every core.
//
// The controller measures the process's CPU time (user and system, every
// thread: getrusage) every Config.Interval:
//
//   - with one P, an interval in which the process kept more than UpBusy of
//     a core busy gives it Config.Max Ps at once (a burst gets every core
//     within one interval);
//   - with more, the process goes back to one P when it used less than
//     DownBusy of a core for Config.Hold without a break. A P count that
//     flaps (up again within twice Hold) doubles the hold, up to MaxHold;
//     a quiet MaxHold restores it.
//
// What it does not see is a process held under a core by other processes
// that want the CPU too: its work queues up, but it is not busy. More Ps
// would win it a larger share of the machine at the others' expense
// (measured with the load tool on the same two cores, 16 supplicants: 1,040–
// 1,080 logins/s with one P, 1,170–1,210/s with two, the same CPU per
// login). The runtime's scheduling-latency histogram cannot tell either:
// goroutines waited 1 ms or more as often with two Ps as with one there.
// A server that must win that contest runs with server.cores = "all".
//
// Standard library only.
package procs

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

// The thresholds, in cores busy (CPU seconds per second). DownBusy is above
// UpBusy because with more Ps the same work costs more CPU (the wake-ups
// this package avoids): work that one P serves at 0.80 of a core takes
// about 0.92 with two.
const (
	UpBusy   = 0.85
	DownBusy = 0.90
	MaxHold  = time.Minute
)

// Config tunes a Controller. The zero value is usable.
type Config struct {
	// Max is the Ps under load, and what Run leaves in force when it
	// returns. Zero means the runtime's default: the GOMAXPROCS
	// environment variable if set, else the CPUs the process may use
	// within its cgroup CPU limit — which the runtime keeps following
	// while the controller has every P in force, and which it re-reads
	// each time it gives them (a container's CPU limit may change while it
	// runs). With Max 1 the controller has nothing to do and Run only
	// waits.
	Max int
	// Interval is how often the load is measured; zero means 250ms.
	Interval time.Duration
	// Hold is how long the load must stay under DownBusy before the
	// process goes back to one P; zero means 2s.
	Hold time.Duration
}

// active is held by the running Controller. GOMAXPROCS is the process's,
// so this guard is too: a second Controller run at the same time (two
// servers in one test binary) leaves it alone.
var active atomic.Bool

// Controller sets GOMAXPROCS from the load; see the package doc.
type Controller struct {
	auto     bool         // Max follows the runtime's default (Config.Max 0, no GOMAXPROCS variable)
	max      atomic.Int32 // the Ps under load (as last learnt, with auto)
	interval time.Duration
	hold     time.Duration
	log      *slog.Logger

	// Replaced by tests: the process's CPU time so far, and the setter
	// (n ≤ 0: the runtime's default, returned).
	cpu func() (time.Duration, error)
	set func(n int) int

	procs   atomic.Int32
	changes atomic.Uint64
}

// New validates cfg; nothing changes until Run.
func New(cfg Config, logger *slog.Logger) (*Controller, error) {
	if cfg.Max < 0 || cfg.Interval < 0 || cfg.Hold < 0 {
		return nil, errors.New("procs: negative Max, Interval or Hold")
	}
	auto := cfg.Max == 0 && os.Getenv("GOMAXPROCS") == ""
	if cfg.Max == 0 {
		cfg.Max = runtime.GOMAXPROCS(0)
	}
	if cfg.Interval == 0 {
		cfg.Interval = 250 * time.Millisecond
	}
	if cfg.Hold == 0 {
		cfg.Hold = 2 * time.Second
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Controller{auto: auto, interval: cfg.Interval, hold: cfg.Hold, log: logger,
		cpu: processCPU, set: setProcs}
	c.max.Store(int32(cfg.Max))
	c.procs.Store(int32(runtime.GOMAXPROCS(0)))
	return c, nil
}

// Procs is the GOMAXPROCS the controller last set (before Run: the
// process's).
func (c *Controller) Procs() int { return int(c.procs.Load()) }

// Changes counts the controller's changes of GOMAXPROCS.
func (c *Controller) Changes() uint64 { return c.changes.Load() }

// Max is the Ps under load.
func (c *Controller) Max() int { return int(c.max.Load()) }

// setProcs sets GOMAXPROCS to n, or with n ≤ 0 to the runtime's default
// (which the runtime then keeps following), and returns it.
func setProcs(n int) int {
	if n <= 0 {
		runtime.SetDefaultGOMAXPROCS()
		return runtime.GOMAXPROCS(0)
	}
	runtime.GOMAXPROCS(n)
	return n
}

// top is what apply takes for every P: the runtime's default with auto.
func (c *Controller) top() int {
	if c.auto {
		return 0
	}
	return c.Max()
}

// Run adapts GOMAXPROCS until ctx is done, then gives every P back (Max,
// or the runtime's default, which it then keeps following) and returns
// nil. It starts with one P (a server starts idle). Without a CPU
// clock (getrusage fails, or another OS) it leaves Max in force and waits.
func (c *Controller) Run(ctx context.Context) error {
	if !active.CompareAndSwap(false, true) {
		c.log.Warn("procs: another controller runs in this process; this one leaves GOMAXPROCS alone")
		<-ctx.Done()
		return nil
	}
	defer active.Store(false)
	defer c.apply(c.top(), "stopping")
	if c.Max() <= 1 {
		c.apply(c.top(), "one core")
		<-ctx.Done()
		return nil
	}
	last, err := c.cpu()
	if err != nil {
		c.log.Warn("procs: no CPU clock; GOMAXPROCS stays at its maximum", "max", c.Max(), "err", err)
		c.apply(c.top(), "no CPU clock")
		<-ctx.Done()
		return nil
	}
	st := state{procs: 1, hold: c.hold}
	c.apply(1, "start")
	t := time.NewTicker(c.interval)
	defer t.Stop()
	prev := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			cpu, err := c.cpu()
			if err != nil {
				continue
			}
			wall := now.Sub(prev)
			if wall <= 0 {
				continue
			}
			busy := float64(cpu-last) / float64(wall)
			last, prev = cpu, now
			before := st.procs
			st = st.next(busy, wall, c.Max(), c.hold)
			if st.procs != before {
				n := st.procs
				if n > 1 {
					n = c.top()
				}
				st.procs = c.apply(n, "load", "busy", busy, "hold", st.hold)
			}
		}
	}
}

// apply sets GOMAXPROCS to n if it is not n already (n ≤ 0: to the
// runtime's default, always) and returns the count in force.
func (c *Controller) apply(n int, why string, attrs ...any) int {
	if n > 0 && int(c.procs.Load()) == n {
		return n
	}
	got := c.set(n)
	if n <= 0 {
		c.max.Store(int32(got))
	}
	if int(c.procs.Swap(int32(got))) != got {
		c.changes.Add(1)
	}
	c.log.Debug("procs: GOMAXPROCS", append([]any{"procs", got, "why", why}, attrs...)...)
	return got
}

// state is the controller's memory between intervals.
type state struct {
	procs int
	low   time.Duration // how long the load has been under DownBusy (more than one P)
	hold  time.Duration // current hold before going back to one P
	since time.Duration // time since the last change
	down  bool          // the last change was down to one P
}

// next is the decision after an interval of length wall in which the
// process kept busy cores busy. base is Config.Hold.
func (s state) next(busy float64, wall time.Duration, max int, base time.Duration) state {
	s.since += wall
	if s.procs <= 1 {
		if busy <= UpBusy {
			if s.since >= MaxHold {
				s.hold = base // quiet for long enough: flapping is over
			}
			return s
		}
		if s.down && s.since < 2*s.hold {
			s.hold = min(2*s.hold, MaxHold) // up again soon after going down
		}
		return state{procs: max, hold: s.hold}
	}
	if busy >= DownBusy {
		s.low = 0
		return s
	}
	s.low += wall
	if s.low < s.hold {
		return s
	}
	return state{procs: 1, hold: s.hold, down: true}
}
