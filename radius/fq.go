package radius

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// Received datagrams wait for a worker in a fair queue: each source
// (address and port, hashed into one of numFlows flows, as in Linux's SFQ)
// has its own bounded FIFO, and workers take one datagram from each
// non-empty flow in turn (deficit round robin with a quantum of one
// packet: every request costs about the same to classify). A source that
// floods fills only its own flow; the others' datagrams are served at
// their own pace. At most busyPerFlow workers handle one flow's datagrams
// at a time, so a flood cannot take every worker (and every core) either.
//
// The readers never take a datagram off a socket without a free buffer for
// it, so a burst waits in the kernel's receive buffer (Config.ReceiveBuffer)
// rather than being dropped. When a source's flow is full the reader waits
// for room, but a source may make it wait only so often: each flow has a
// token bucket (waitBurst datagrams, refilled at waitRate per second) that
// a burst spends and a flood exhausts. Without a token — or when the
// socket's receive buffer is more than half full — the source's datagram
// is dropped (reason "overload") and the reader goes on draining the
// socket, so the other sources' datagrams neither queue behind the flood
// in the kernel nor get dropped there.

const (
	numFlows  = 16384
	waitBurst = 2048 // datagrams a source may make the reader wait for at once
	waitRate  = 256  // per second, refilled
)

// flow is one source's queue; its fields are guarded by fairQueue.mu.
type flow struct {
	head, tail *job
	n          int
	busy       int   // datagrams of this flow in work
	next       int32 // next flow in the active list, -1 at the end
	active     bool
	waiter     chan struct{} // a reader waiting for room, if any
	tokens     float64       // wait token bucket
	last       int64         // unix nanoseconds of the last refill
}

// fairQueue holds the datagrams read but not yet taken by a worker.
type fairQueue struct {
	seed     maphash.Seed
	perFlow  int
	busyFlow int // most datagrams of one flow in work at once

	mu         sync.Mutex // guards the fields below and the flows
	work       sync.Cond  // signalled when a datagram is queued or on close
	flows      [numFlows]flow
	head, tail int32 // round-robin list of flows with datagrams; -1 when empty
	queued     int
	closed     bool
}

func newFairQueue(perFlow, busyFlow int) *fairQueue {
	q := &fairQueue{seed: maphash.MakeSeed(), perFlow: perFlow, busyFlow: max(1, busyFlow), head: -1, tail: -1}
	q.work.L = &q.mu
	return q
}

// flowOf maps a source to its flow. It allocates nothing.
func (q *fairQueue) flowOf(src netip.AddrPort) int32 {
	var k [18]byte
	a := src.Addr().As16()
	copy(k[:], a[:])
	k[16], k[17] = byte(src.Port()>>8), byte(src.Port())
	return int32(maphash.Bytes(q.seed, k[:]) % numFlows)
}

// push queues j (j.flow set). It returns false if j's flow is full or the
// queue is closed; the caller keeps j.
func (q *fairQueue) push(j *job) bool {
	q.mu.Lock()
	f := &q.flows[j.flow]
	if q.closed || f.n >= q.perFlow {
		q.mu.Unlock()
		return false
	}
	j.next = nil
	if f.tail == nil {
		f.head = j
	} else {
		f.tail.next = j
	}
	f.tail = j
	f.n++
	if !f.active && f.busy < q.busyFlow {
		q.activate(j.flow)
	}
	q.queued++
	q.mu.Unlock()
	q.work.Signal()
	return true
}

// activate appends flow i to the round-robin list. Caller holds mu.
func (q *fairQueue) activate(i int32) {
	f := &q.flows[i]
	f.active, f.next = true, -1
	if q.tail < 0 {
		q.head = i
	} else {
		q.flows[q.tail].next = i
	}
	q.tail = i
}

// mayWait takes a wait token from flow i: false if it has none left.
func (q *fairQueue) mayWait(i int32, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	f := &q.flows[i]
	t := now.UnixNano()
	f.tokens = min(waitBurst, f.tokens+float64(t-f.last)*waitRate/1e9)
	f.last = t
	if f.tokens < 1 {
		return false
	}
	f.tokens--
	return true
}

// waitRoom blocks until flow i has room, ch is signalled (by a worker
// taking from the flow) or stop/timeout fires — whichever is first; the
// caller tries push again.
func (q *fairQueue) waitRoom(i int32, ch chan struct{}, wake <-chan time.Time) {
	q.mu.Lock()
	f := &q.flows[i]
	if q.closed || f.n < q.perFlow {
		q.mu.Unlock()
		return
	}
	f.waiter = ch
	q.mu.Unlock()
	select {
	case <-ch:
	case <-wake:
	}
}

// pop takes the next datagram in round-robin order, waiting for one; nil
// when the queue is closed and empty. The caller calls done when it has
// handled the datagram.
func (q *fairQueue) pop() *job {
	q.mu.Lock()
	return q.popLocked()
}

// next is done(prev) (unless prev < 0) and pop in one: a worker's loop.
func (q *fairQueue) next(prev int32) *job {
	q.mu.Lock()
	wake := prev >= 0 && q.doneLocked(prev)
	j := q.popLocked()
	if wake {
		q.work.Signal() // prev's flow may have more for another worker
	}
	return j
}

// popLocked is pop with mu held; it unlocks mu.
func (q *fairQueue) popLocked() *job {
	for q.head < 0 {
		if q.closed && q.queued == 0 {
			q.mu.Unlock()
			return nil
		}
		q.work.Wait()
	}
	i := q.head
	f := &q.flows[i]
	j := f.head
	f.head = j.next
	if f.head == nil {
		f.tail = nil
	}
	j.next = nil
	f.n--
	f.busy++
	q.queued--
	q.head = f.next
	if q.head < 0 {
		q.tail = -1
	}
	f.active = false
	if f.n > 0 && f.busy < q.busyFlow {
		q.activate(i)
	}
	if f.waiter != nil {
		select {
		case f.waiter <- struct{}{}:
		default:
		}
		f.waiter = nil
	}
	last := q.closed && q.queued == 0
	q.mu.Unlock()
	if last {
		q.work.Broadcast() // the other workers may return
	}
	return j
}

// done ends the work on a datagram of flow i.
func (q *fairQueue) done(i int32) {
	q.mu.Lock()
	wake := q.doneLocked(i)
	q.mu.Unlock()
	if wake {
		q.work.Signal()
	}
}

// doneLocked is done with mu held; true if flow i went back into the
// round: a waiting worker may take it.
func (q *fairQueue) doneLocked(i int32) bool {
	f := &q.flows[i]
	f.busy--
	if f.n > 0 && !f.active {
		q.activate(i)
		return true
	}
	return false
}

// close wakes every worker; pop returns nil once the queue is empty.
func (q *fairQueue) close() {
	q.mu.Lock()
	q.closed = true
	for i := range q.flows {
		if w := q.flows[i].waiter; w != nil {
			select {
			case w <- struct{}{}:
			default:
			}
		}
	}
	q.mu.Unlock()
	q.work.Broadcast()
}

// len is the number of datagrams queued.
func (q *fairQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.queued
}
