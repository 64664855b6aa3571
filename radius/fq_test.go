package radius

import (
	"net/netip"
	"testing"
	"time"
)

func fqJob(q *fairQueue, src string) *job {
	j := &job{src: netip.MustParseAddrPort(src)}
	j.flow = q.flowOf(j.src)
	return j
}

// TestFairQueue: a flooding source fills only its own flow (bounded),
// another source's datagram is served next in turn, and no more than
// busyFlow datagrams of one source are in work at once.
func TestFairQueue(t *testing.T) {
	q := newFairQueue(4, 2)
	flood := "127.0.0.2:5000"
	queued := 0
	for range 10 {
		if q.push(fqJob(q, flood)) {
			queued++
		}
	}
	if queued != 4 {
		t.Fatalf("flood queued %d datagrams, want the flow's bound 4", queued)
	}
	// The first flood datagram is in work; then a login's arrives.
	a := q.pop()
	login := fqJob(q, "127.0.0.1:6000")
	if login.flow == a.flow {
		t.Skip("hash collision between the two test sources")
	}
	if !q.push(login) {
		t.Fatal("login datagram refused")
	}
	// Round robin: the flood's turn, then the login's.
	if b := q.pop(); b.src.String() != flood {
		t.Fatalf("second pop %v", b.src)
	}
	if c := q.pop(); c != login {
		t.Fatalf("login not served in its turn: %v", c.src)
	}
	q.done(login.flow)
	// Two flood datagrams are in work: the flood waits for one to end.
	got := make(chan *job, 1)
	go func() { got <- q.pop() }()
	select {
	case j := <-got:
		t.Fatalf("a third flood datagram (%v) went to work while two were busy", j.src)
	case <-time.After(30 * time.Millisecond):
	}
	q.done(a.flow)
	if j := <-got; j.src.String() != flood {
		t.Fatalf("got %v", j.src)
	}
	q.close()
}

// TestFairQueueClose: workers drain what is queued, then pop returns nil.
func TestFairQueueClose(t *testing.T) {
	q := newFairQueue(8, 1)
	for range 3 {
		q.push(fqJob(q, "127.0.0.1:1"))
	}
	q.close()
	n := 0
	for j := q.pop(); j != nil; j = q.pop() {
		n++
		q.done(j.flow)
	}
	if n != 3 || q.push(fqJob(q, "127.0.0.1:1")) {
		t.Errorf("drained %d, push after close accepted", n)
	}
}

// TestFairQueueAllocs: classifying, queueing and serving a datagram
// allocates nothing.
func TestFairQueueAllocs(t *testing.T) {
	q := newFairQueue(8, 2)
	j := fqJob(q, "[2001:db8::1]:1812")
	if n := testing.AllocsPerRun(1000, func() {
		j.flow = q.flowOf(j.src)
		if !q.push(j) {
			t.Fatal("full")
		}
		q.done(q.pop().flow)
	}); n != 0 {
		t.Errorf("%v allocations per datagram", n)
	}
}

// TestWaitTokens: a source may hold the reader for a burst of waitBurst
// datagrams, then only at waitRate.
func TestWaitTokens(t *testing.T) {
	q := newFairQueue(8, 2)
	now := time.Unix(1e9, 0)
	n := 0
	for q.mayWait(3, now) {
		n++
	}
	if n != waitBurst {
		t.Errorf("burst %d, want %d", n, waitBurst)
	}
	if !q.mayWait(3, now.Add(time.Second/waitRate)) || q.mayWait(3, now.Add(time.Second/waitRate)) {
		t.Error("refill is not waitRate per second")
	}
	if !q.mayWait(4, now) {
		t.Error("another flow has no tokens")
	}
}
