package procs

import (
	"context"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const tick = 250 * time.Millisecond

// after feeds next one interval per busy value, from s, and returns the
// P count after each.
func after(s state, max int, busy ...float64) ([]int, state) {
	var got []int
	for _, b := range busy {
		s = s.next(b, tick, max, 2*time.Second)
		got = append(got, s.procs)
	}
	return got, s
}

func repeat(v float64, n int) []float64 {
	r := make([]float64, n)
	for i := range r {
		r[i] = v
	}
	return r
}

func eq(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func ints(v, n int) []int {
	r := make([]int, n)
	for i := range r {
		r[i] = v
	}
	return r
}

func TestNext(t *testing.T) {
	one := state{procs: 1, hold: 2 * time.Second}
	for _, c := range []struct {
		name string
		busy []float64
		want []int
	}{
		{"idle stays at one", repeat(0.1, 20), ints(1, 20)},
		{"fits one core", repeat(UpBusy, 20), ints(1, 20)},
		{"over one core: every P at once", []float64{0.5, 0.86, 0.86}, []int{1, 8, 8}},
		{"down after the hold (8 intervals)", append([]float64{1.2}, repeat(0.5, 9)...), append(ints(8, 8), 1, 1)},
		{"a busy interval restarts the hold", append(append([]float64{1.2}, repeat(0.5, 7)...), append([]float64{DownBusy}, repeat(0.5, 8)...)...),
			append(ints(8, 16), 1)},
	} {
		got, _ := after(one, 8, c.busy...)
		if !eq(got, c.want) {
			t.Errorf("%s: P counts %v, want %v", c.name, got, c.want)
		}
	}
}

func TestNextFlapDoublesHold(t *testing.T) {
	s := state{procs: 1, hold: 2 * time.Second}
	// Up, down after 2s, up again at once: the hold doubles to 4s.
	_, s = after(s, 2, append([]float64{1}, repeat(0.5, 8)...)...)
	if s.procs != 1 {
		t.Fatalf("procs %d after the hold, want 1", s.procs)
	}
	_, s = after(s, 2, 1)
	if s.procs != 2 || s.hold != 4*time.Second {
		t.Fatalf("after a flap: procs %d hold %v, want 2 and 4s", s.procs, s.hold)
	}
	got, s := after(s, 2, repeat(0.5, 16)...)
	if !eq(got, append(ints(2, 15), 1)) {
		t.Fatalf("down after the doubled hold: %v", got)
	}
	// Flaps never hold longer than MaxHold.
	for range 10 {
		_, s = after(s, 2, 1)
		_, s = after(s, 2, repeat(0.5, int(s.hold/tick))...)
	}
	if s.hold != MaxHold {
		t.Fatalf("hold %v after many flaps, want MaxHold %v", s.hold, MaxHold)
	}
	// A quiet MaxHold at one P restores the base hold.
	_, s = after(s, 2, repeat(0.2, int(MaxHold/tick))...)
	if s.hold != 2*time.Second {
		t.Fatalf("hold %v after a quiet minute, want 2s", s.hold)
	}
}

// fakeCPU is a CPU clock that runs at busy cores.
type fakeCPU struct {
	mu   sync.Mutex
	busy float64
	cpu  time.Duration
	last time.Time
}

func (f *fakeCPU) read() (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if !f.last.IsZero() {
		f.cpu += time.Duration(f.busy * float64(now.Sub(f.last)))
	}
	f.last = now
	return f.cpu, nil
}

func (f *fakeCPU) setBusy(b float64) {
	f.read()
	f.mu.Lock()
	f.busy = b
	f.mu.Unlock()
}

func waitProcs(t *testing.T, what string, get func() int, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for get() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: procs %d, want %d", what, get(), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestRunFollowsLoad(t *testing.T) {
	c, err := New(Config{Max: 4, Interval: 5 * time.Millisecond, Hold: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCPU{}
	var set atomic.Int32
	c.cpu, c.set = f.read, func(n int) int { set.Store(int32(n)); return n }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	get := func() int { return int(set.Load()) }
	waitProcs(t, "start", get, 1)
	f.setBusy(1.5)
	waitProcs(t, "load", get, 4)
	f.setBusy(0.1)
	waitProcs(t, "idle again", get, 1)
	if c.Procs() != 1 || c.Changes() < 3 {
		t.Errorf("Procs %d Changes %d, want 1 and at least 3", c.Procs(), c.Changes())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if get() != 4 {
		t.Errorf("after Run: procs %d, want Max 4", get())
	}
}

func TestRunWithOneCore(t *testing.T) {
	c, _ := New(Config{Max: 1, Interval: time.Millisecond}, nil)
	var calls atomic.Int32
	c.set = func(n int) int {
		if n != 1 {
			t.Errorf("set %d with Max 1", n)
		}
		calls.Add(1)
		return n
	}
	c.procs.Store(1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 0 {
		t.Errorf("%d changes with one core", calls.Load())
	}
}

func TestRunOnePerProcess(t *testing.T) {
	first, _ := New(Config{Max: 4, Interval: time.Millisecond}, nil)
	second, _ := New(Config{Max: 4, Interval: time.Millisecond}, nil)
	f := &fakeCPU{}
	var firstSet, secondSet atomic.Int32
	first.cpu, first.set = f.read, func(n int) int { firstSet.Store(int32(n)); return n }
	second.cpu, second.set = f.read, func(n int) int { secondSet.Store(int32(n)); return n }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- first.Run(ctx) }()
	waitProcs(t, "first", func() int { return int(firstSet.Load()) }, 1)
	go func() { done <- second.Run(ctx) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-done
	<-done
	if secondSet.Load() != 0 {
		t.Errorf("the second controller set GOMAXPROCS to %d", secondSet.Load())
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{{Max: -1}, {Interval: -1}, {Hold: -1}} {
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	c, err := New(Config{}, nil)
	if err != nil || c.Max() != runtime.GOMAXPROCS(0) || c.interval != 250*time.Millisecond || c.hold != 2*time.Second {
		t.Errorf("defaults: %v max %d interval %v hold %v", err, c.Max(), c.interval, c.hold)
	}
}

// TestRunRealRuntime runs the controller on the real runtime and CPU
// clock: two goroutines burning CPU raise GOMAXPROCS to Max, idleness
// brings it back to one, and Run leaves Max in force.
func TestRunRealRuntime(t *testing.T) {
	max := runtime.GOMAXPROCS(0)
	if max < 2 {
		t.Skip("one CPU: nothing to adapt")
	}
	defer runtime.GOMAXPROCS(max)
	c, err := New(Config{Interval: 20 * time.Millisecond, Hold: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	get := func() int { return runtime.GOMAXPROCS(0) }
	waitProcs(t, "start", get, 1)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for x := 0; !stop.Load(); x++ {
				if x%1024 == 0 {
					runtime.Gosched()
				}
			}
		}()
	}
	waitProcs(t, "two goroutines burning CPU", get, max)
	stop.Store(true)
	wg.Wait()
	waitProcs(t, "idle", get, 1)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if get() != max {
		t.Errorf("after Run: GOMAXPROCS %d, want %d", get(), max)
	}
}

// TestMaxFollowsTheDefault: with Config.Max 0 and no GOMAXPROCS variable
// the controller gives the runtime's default back (which follows the
// cgroup limit); an admin's GOMAXPROCS is a fixed maximum.
func TestMaxFollowsTheDefault(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	if c, _ := New(Config{}, nil); !c.auto || c.top() != 0 {
		t.Errorf("no GOMAXPROCS: auto %v top %d, want the runtime's default", c.auto, c.top())
	}
	if c, _ := New(Config{Max: 3}, nil); c.auto || c.top() != 3 {
		t.Errorf("Max 3: auto %v top %d", c.auto, c.top())
	}
	t.Setenv("GOMAXPROCS", "3")
	if c, _ := New(Config{}, nil); c.auto || c.top() != runtime.GOMAXPROCS(0) {
		t.Errorf("GOMAXPROCS set: auto %v top %d, want the fixed %d", c.auto, c.top(), runtime.GOMAXPROCS(0))
	}
}
