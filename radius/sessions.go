package radius

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/radius/eap"
)

// session is one EAP conversation, found by its State attribute.
type session struct {
	key      [16]byte
	nas      string
	identity string    // EAP identity (not authenticated)
	start    time.Time // first request; immutable

	// Set with decision, guarded by mu.
	tlsVersion uint16
	resumed    bool

	// mu is held while a request of this conversation is handled; a second
	// request arriving meanwhile is dropped.
	mu       sync.Mutex
	eap      *eap.ServerSession
	evicted  atomic.Bool      // removed from the table while busy: close when done
	decision *policy.Decision // set when the handshake finished; guarded by mu
	// awaitDecision: the handshake finished but no decision slot was
	// free; the retransmission starts the decision. Guarded by mu.
	awaitDecision bool

	// Guarded by sessionTable.mu.
	created, last time.Time
	list          int // which LRU list: listHalfOpen or listActive
	prev, next    *session
	inTable       bool
	bytes         int // memory held, as accounted (budget.go)
	class         int // byte class list holding s
	bprev, bnext  *session
	client        int  // index of its NAS client entry (clientLists)
	inClient      bool // in its client's half-open list
	cprev, cnext  *session
}

const (
	listHalfOpen = iota // no TLS data yet
	listActive
)

// lru is an intrusive doubly linked list, most recent at the front.
type lru struct{ head, tail *session }

func (l *lru) pushFront(s *session) {
	s.prev, s.next = nil, l.head
	if l.head != nil {
		l.head.prev = s
	}
	l.head = s
	if l.tail == nil {
		l.tail = s
	}
}

func (l *lru) remove(s *session) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		l.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		l.tail = s.prev
	}
	s.prev, s.next = nil, nil
}

// sessionTable bounds conversations in number and time. When full, the
// least recently active half-open conversation (no TLS data yet) is evicted
// first, so a flood of Identity-only requests cannot push out users whose
// handshakes are under way; then the least recently active of the rest.
type sessionTable struct {
	max             int
	budget          int64 // bytes; 0: none (budget.go)
	idle, total     time.Duration
	evictions       atomic.Uint64
	budgetEvictions atomic.Uint64
	expirations     atomic.Uint64

	mu      sync.Mutex // guards the fields below and the session fields marked so
	m       map[[16]byte]*session
	lists   [2]lru
	classes [numByteClasses]byteList // by bytes held
	bytes   int64                    // held by all sessions

	// Half-open conversations per client entry, oldest at the tail: a
	// client holding halfOpenMax of them loses its own oldest to a new
	// one, so a flood through one client cannot evict another's.
	halfOpenMax int
	clients     []clientList
}

// clientList is one client's half-open conversations (cprev/cnext).
type clientList struct {
	head, tail *session
	n          int
}

func (l *clientList) pushFront(s *session) {
	s.cprev, s.cnext = nil, l.head
	if l.head != nil {
		l.head.cprev = s
	}
	l.head = s
	if l.tail == nil {
		l.tail = s
	}
	l.n++
	s.inClient = true
}

func (l *clientList) remove(s *session) {
	if s.cprev != nil {
		s.cprev.cnext = s.cnext
	} else {
		l.head = s.cnext
	}
	if s.cnext != nil {
		s.cnext.cprev = s.cprev
	} else {
		l.tail = s.cprev
	}
	s.cprev, s.cnext = nil, nil
	l.n--
	s.inClient = false
}

// clientList returns s's client list, nil when not tracked.
func (t *sessionTable) clientListOf(s *session) *clientList {
	if t.halfOpenMax <= 0 || s.client < 0 || s.client >= len(t.clients) {
		return nil
	}
	return &t.clients[s.client]
}

func newSessionTable(max int, idle, total time.Duration) *sessionTable {
	return &sessionTable{max: max, idle: idle, total: total, m: make(map[[16]byte]*session)}
}

// add inserts s; it returns a session evicted to make room, if any: the
// client's own oldest half-open conversation when it holds halfOpenMax,
// else, when the table is full, the least recently active half-open one.
func (t *sessionTable) add(s *session, now time.Time) (evicted *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cl := t.clientListOf(s)
	if cl != nil && cl.n >= t.halfOpenMax && cl.tail != nil {
		evicted = cl.tail
		t.removeLocked(evicted)
		t.evictions.Add(1)
	} else if len(t.m) >= t.max {
		victim := t.lists[listHalfOpen].tail
		if victim == nil {
			victim = t.lists[listActive].tail
		}
		if victim != nil {
			t.removeLocked(victim)
			t.evictions.Add(1)
			evicted = victim
		}
	}
	s.created, s.last, s.list, s.inTable = now, now, listHalfOpen, true
	t.m[s.key] = s
	t.lists[listHalfOpen].pushFront(s)
	t.placeLocked(s, sessionBase)
	if cl != nil {
		cl.pushFront(s)
	}
	return evicted
}

// get finds a session and marks it active now.
func (t *sessionTable) get(key *[16]byte, now time.Time) *session {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.m[*key]
	if s == nil {
		return nil
	}
	t.lists[s.list].remove(s)
	s.last = now
	t.lists[s.list].pushFront(s)
	return s
}

// promote moves s to the list of conversations with TLS under way.
func (t *sessionTable) promote(s *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !s.inTable || s.list == listActive {
		return
	}
	t.lists[s.list].remove(s)
	s.list = listActive
	t.lists[listActive].pushFront(s)
	if s.inClient {
		t.clientListOf(s).remove(s)
	}
}

func (t *sessionTable) remove(s *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.inTable {
		t.removeLocked(s)
	}
}

func (t *sessionTable) removeLocked(s *session) {
	t.lists[s.list].remove(s)
	t.unplaceLocked(s)
	if s.inClient {
		t.clientListOf(s).remove(s)
	}
	delete(t.m, s.key)
	s.inTable = false
}

// expire removes conversations idle too long or older than the total
// timeout and returns them.
func (t *sessionTable) expire(now time.Time) []*session {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*session
	for i := range t.lists {
		// Idle: walk from the least recent end.
		for s := t.lists[i].tail; s != nil && now.Sub(s.last) >= t.idle; s = t.lists[i].tail {
			t.removeLocked(s)
			out = append(out, s)
		}
	}
	if t.total > 0 {
		for k, s := range t.m {
			_ = k
			if now.Sub(s.created) >= t.total {
				t.removeLocked(s)
				out = append(out, s)
			}
		}
	}
	t.expirations.Add(uint64(len(out)))
	return out
}

// drain removes and returns every session.
func (t *sessionTable) drain() []*session {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*session, 0, len(t.m))
	for _, s := range t.m {
		t.removeLocked(s)
		out = append(out, s)
	}
	return out
}

func (t *sessionTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// closeSession ends a session's TLS goroutine; if a worker holds it, the
// worker closes it when done.
func closeSession(s *session) {
	s.evicted.Store(true)
	if s.mu.TryLock() {
		s.eap.Close()
		s.mu.Unlock()
	}
}
