// Package metric holds a tiny lock-free latency histogram for the hot paths
// of radius and vpn (and, through a one-method interface, directory). It
// imports only the standard library and knows nothing of Prometheus: cmd
// reads a Snapshot at scrape time and turns it into a const histogram.
package metric

import (
	"sync/atomic"
	"time"
)

// Buckets are the upper bounds shared by every Histogram, from 1 ms to 30 s
// (an EAP-TLS conversation over a slow access point takes hundreds of ms; a
// directory query a few ms; a timed-out one up to its timeout).
var Buckets = [...]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
	30 * time.Second,
}

// Histogram counts durations into Buckets. The zero value is ready to use;
// Observe is safe for concurrent use, never locks and never allocates.
type Histogram struct {
	counts [len(Buckets) + 1]atomic.Uint64 // last: above every bound (+Inf)
	count  atomic.Uint64
	sum    atomic.Int64 // nanoseconds
}

// Observe records one duration. Negative durations count as zero.
func (h *Histogram) Observe(d time.Duration) {
	d = max(d, 0)
	i := 0
	for i < len(Buckets) && d > Buckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
	h.count.Add(1)
}

// Snapshot is a point-in-time copy of a Histogram. Counts are per bucket
// (not cumulative); Counts[len(Buckets)] is the overflow bucket.
type Snapshot struct {
	Counts [len(Buckets) + 1]uint64
	Count  uint64
	Sum    time.Duration
}

// Snapshot returns the counts. Concurrent Observe calls may be half seen
// (a bucket counted, the total not yet): Count is recomputed from the
// buckets so the snapshot is consistent in itself.
func (h *Histogram) Snapshot() Snapshot {
	var s Snapshot
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
		s.Count += s.Counts[i]
	}
	s.Sum = time.Duration(h.sum.Load())
	return s
}

// Cumulative returns, for each bound in Buckets, the number of observations
// less than or equal to it.
func (s *Snapshot) Cumulative() [len(Buckets)]uint64 {
	var c [len(Buckets)]uint64
	var n uint64
	for i := range Buckets {
		n += s.Counts[i]
		c[i] = n
	}
	return c
}
