package radius

import "math/bits"

// Memory budget. MaxSessions bounds the number of conversations, not their
// bytes: a peer that sends the first fragments of a large TLS message and
// stops makes the server keep them (up to 64 KiB of reassembly buffer, a
// TLS handshake goroutine). The session table therefore counts the bytes
// each conversation holds (eap.ServerSession.Bytes plus sessionBase) and,
// when the total exceeds MaxSessionBytes, evicts the conversations holding
// the most first — least recently active first among those of about the
// same size (byte classes by powers of two) — until it fits again. A real
// login holds a few KiB between its round trips; half-open conversations
// stuffed with fragments go first, and logins under way keep working.

// sessionBase is the fixed cost of a conversation: the session and
// ServerSession structs, its map entry and its State.
const sessionBase = 512

// numByteClasses covers 1 KiB << 0 … 1 KiB << 22 (4 GiB).
const numByteClasses = 24

// byteClass is the class of a conversation holding n bytes.
func byteClass(n int) int {
	return min(bits.Len(uint(n)>>10), numByteClasses-1)
}

// byteList is an intrusive doubly linked list over session.bprev/bnext,
// most recently accounted at the front.
type byteList struct{ head, tail *session }

func (l *byteList) pushFront(s *session) {
	s.bprev, s.bnext = nil, l.head
	if l.head != nil {
		l.head.bprev = s
	}
	l.head = s
	if l.tail == nil {
		l.tail = s
	}
}

func (l *byteList) remove(s *session) {
	if s.bprev != nil {
		s.bprev.bnext = s.bnext
	} else {
		l.head = s.bnext
	}
	if s.bnext != nil {
		s.bnext.bprev = s.bprev
	} else {
		l.tail = s.bprev
	}
	s.bprev, s.bnext = nil, nil
}

// placeLocked puts s, holding n bytes, in its byte class. Caller holds mu;
// s is in the table and not in a class list.
func (t *sessionTable) placeLocked(s *session, n int) {
	s.bytes = n
	s.class = byteClass(n)
	t.bytes += int64(n)
	t.classes[s.class].pushFront(s)
}

// unplaceLocked takes s out of its byte class.
func (t *sessionTable) unplaceLocked(s *session) {
	t.classes[s.class].remove(s)
	t.bytes -= int64(s.bytes)
	s.bytes = 0
}

// account records that s now holds eapBytes (eap.ServerSession.Bytes) and
// returns the conversations evicted to stay within the budget (possibly s
// itself); the caller closes them.
func (t *sessionTable) account(s *session, eapBytes int) []*session {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !s.inTable {
		return nil
	}
	t.unplaceLocked(s)
	t.placeLocked(s, sessionBase+eapBytes)
	var out []*session
	for t.budget > 0 && t.bytes > t.budget {
		c := numByteClasses - 1
		for c >= 0 && t.classes[c].tail == nil {
			c--
		}
		if c < 0 {
			break
		}
		v := t.classes[c].tail
		t.removeLocked(v)
		t.budgetEvictions.Add(1)
		out = append(out, v)
	}
	return out
}

// heldBytes is the memory the conversations hold, as accounted.
func (t *sessionTable) heldBytes() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bytes
}
