package wifi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/gatehouse/gatehouse/policy/atomicfile"
	"github.com/gatehouse/gatehouse/policy/jsonl"
	"github.com/gatehouse/gatehouse/store/spool"
)

// FileStore is the Store of one node in files: accounting.jsonl holds one
// {"idem_key","node","record"} line per record (whole lines, synced), and
// sessions.json the live sessions (replaced atomically). Idempotency
// relies on the spool's order: a node's keys arrive with increasing
// sequence numbers, so the highest one seen per node (rebuilt from the
// file at Open) says what is already stored.
type FileStore struct {
	dir string

	mu       sync.Mutex // guards the fields below
	acct     *jsonl.Appender
	maxSeq   map[string]uint64
	sessions map[string]storedSession
}

type storedSession struct {
	Updated int64           `json:"updated"` // unix nanoseconds
	Ended   bool            `json:"ended,omitempty"`
	Record  json.RawMessage `json:"record"`
}

type acctLine struct {
	Key    string          `json:"idem_key"`
	Node   string          `json:"node"`
	Record json.RawMessage `json:"record"`
}

// OpenFile opens (creating) a FileStore in dir.
func OpenFile(dir string) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("wifi: %w", err)
	}
	f := &FileStore{dir: dir, maxSeq: map[string]uint64{}, sessions: map[string]storedSession{}}
	rows, err := f.readAcct()
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		if seq := keySeq(r.Key); seq > f.maxSeq[r.Node] {
			f.maxSeq[r.Node] = seq
		}
	}
	if f.acct, err = jsonl.Open(filepath.Join(dir, "accounting.jsonl"), 0o640); err != nil {
		return nil, fmt.Errorf("wifi: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "sessions.json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("wifi: %w", err)
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &f.sessions); err != nil {
			return nil, fmt.Errorf("wifi: sessions.json: %w", err)
		}
	}
	return f, nil
}

func keySeq(k string) uint64 {
	i := strings.LastIndexByte(k, ':')
	v, _ := strconv.ParseUint(k[i+1:], 10, 64)
	return v
}

// Close closes the accounting file.
func (f *FileStore) Close() error { return f.acct.Close() }

// Apply implements spool.Target.
func (f *FileStore) Apply(ctx context.Context, node string, es []spool.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lines []byte
	sessions := false
	for _, e := range es {
		if e.Seq <= f.maxSeq[node] {
			continue
		}
		switch e.Kind {
		case KindAcct:
			b, err := json.Marshal(acctLine{Key: spool.Key(node, e.Seq), Node: node, Record: e.Data})
			if err != nil {
				return fmt.Errorf("wifi: %w", err)
			}
			lines = append(append(lines, b...), '\n')
		case KindSession, KindSessionEnd:
			sessions = true
		}
	}
	if len(lines) > 0 {
		if err := f.acct.Append(lines); err != nil {
			return fmt.Errorf("wifi: %w", err)
		}
		if err := f.acct.Sync(); err != nil {
			return fmt.Errorf("wifi: %w", err)
		}
	}
	if sessions {
		next := make(map[string]storedSession, len(f.sessions))
		for k, v := range f.sessions {
			next[k] = v
		}
		for _, e := range es {
			if e.Seq <= f.maxSeq[node] {
				continue
			}
			switch e.Kind {
			case KindSession:
				var s Session
				if err := json.Unmarshal(e.Data, &s); err != nil {
					return fmt.Errorf("wifi: session record: %w", err)
				}
				if old, ok := next[s.Token]; !ok || old.Updated <= s.Updated.UnixNano() {
					next[s.Token] = storedSession{Updated: s.Updated.UnixNano(), Record: e.Data}
				}
			case KindSessionEnd:
				var s SessionEnd
				if err := json.Unmarshal(e.Data, &s); err != nil {
					return fmt.Errorf("wifi: session end: %w", err)
				}
				if old, ok := next[s.Token]; !ok || old.Updated <= s.Updated.UnixNano() {
					next[s.Token] = storedSession{Updated: s.Updated.UnixNano(), Ended: true}
				}
			}
		}
		if err := writeAtomic(filepath.Join(f.dir, "sessions.json"), next); err != nil {
			return err
		}
		f.sessions = next
	}
	if n := len(es); n > 0 && es[n-1].Seq > f.maxSeq[node] {
		f.maxSeq[node] = es[n-1].Seq
	}
	return nil
}

func writeAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err == nil {
		err = atomicfile.Write(path, b, 0o600)
	}
	if err != nil {
		return fmt.Errorf("wifi: %w", err)
	}
	return nil
}

// LookupSession implements Store.
func (f *FileStore) LookupSession(ctx context.Context, token string) (json.RawMessage, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[token]
	if !ok || s.Ended {
		return nil, false, nil
	}
	return s.Record, true, nil
}

// Accounting implements Store.
func (f *FileStore) Accounting(ctx context.Context, acctSession string) ([]AcctRow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rows, err := f.readAcct()
	if err != nil {
		return nil, err
	}
	out := rows[:0]
	for _, r := range rows {
		if acctSession == "" || r.Acct.SessionID == acctSession {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *FileStore) readAcct() ([]AcctRow, error) {
	fh, err := os.Open(filepath.Join(f.dir, "accounting.jsonl"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wifi: %w", err)
	}
	defer fh.Close()
	var out []AcctRow
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var l acctLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			continue // a partial last line, cut at the next Open
		}
		r := AcctRow{Key: l.Key, Node: l.Node, Record: l.Record}
		json.Unmarshal(l.Record, &r.Acct)
		out = append(out, r)
	}
	return out, sc.Err()
}
