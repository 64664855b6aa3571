package metric

import (
	"sync"
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{-time.Second, 0, time.Millisecond, 1001 * time.Microsecond, 20 * time.Millisecond, time.Minute} {
		h.Observe(d)
	}
	s := h.Snapshot()
	if s.Count != 6 {
		t.Fatalf("Count = %d, want 6", s.Count)
	}
	want := time.Millisecond + 1001*time.Microsecond + 20*time.Millisecond + time.Minute
	if s.Sum != want {
		t.Errorf("Sum = %v, want %v", s.Sum, want)
	}
	tests := []struct {
		bound time.Duration
		want  uint64
	}{
		{time.Millisecond, 3}, // -1s (as 0), 0, 1ms: bounds are inclusive
		{2500 * time.Microsecond, 4},
		{25 * time.Millisecond, 5},
		{30 * time.Second, 5},
	}
	cum := s.Cumulative()
	for _, tt := range tests {
		i := 0
		for Buckets[i] != tt.bound {
			i++
		}
		if cum[i] != tt.want {
			t.Errorf("le %v: %d, want %d", tt.bound, cum[i], tt.want)
		}
	}
	if s.Counts[len(Buckets)] != 1 {
		t.Errorf("overflow = %d, want 1", s.Counts[len(Buckets)])
	}
}

func TestHistogramConcurrent(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				h.Observe(time.Duration(g*i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	if s := h.Snapshot(); s.Count != 8000 {
		t.Fatalf("Count = %d, want 8000", s.Count)
	}
}

func TestObserveAllocs(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(100, func() { h.Observe(3 * time.Millisecond) }); n != 0 {
		t.Fatalf("Observe allocates %v times", n)
	}
}

func BenchmarkObserve(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(0)
		for pb.Next() {
			d += 7 * time.Microsecond
			h.Observe(d % time.Second)
		}
	})
}
