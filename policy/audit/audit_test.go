package audit

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

var update = flag.Bool("update", false, "rewrite golden files")

func event() policy.AuditEvent {
	return policy.AuditEvent{
		Time:    time.Date(2026, 11, 27, 17, 30, 0, 123456789, time.UTC),
		Door:    "wifi",
		Event:   "authenticate",
		NAS:     "lab-ap",
		NASAddr: netip.MustParseAddrPort("127.0.0.1:40000"),
		Allowed: true,
		Decision: policy.Decision{
			Allowed: true, Code: policy.CodeAllowed, Rule: "engineering", Reason: "rule engineering allows",
			Identity: policy.Identity{
				Kind: policy.KindUser, Field: "upn", Name: "alice@corp.example.com",
				UPN: []string{"alice@corp.example.com"}, Email: []string{"alice@example.com"}, CN: "Alice Example",
				Fingerprint: "0f1e2d", CertSerial: "1a2b", Subject: "CN=Alice Example", Issuer: "CN=Employee Intermediate,O=Example",
			},
			DN:     "uid=alice,ou=people,dc=example,dc=com",
			Groups: []string{"cn=backend,ou=groups,dc=example,dc=com", "cn=engineering,ou=groups,dc=example,dc=com"},
			WiFi:   policy.WiFi{VLAN: "10", Class: "secret-class-is-not-logged"},
		},
		TLSVersion: tls.VersionTLS13,
		Resumed:    true,
		Duration:   12345 * time.Microsecond,
	}
}

func TestGolden(t *testing.T) {
	evs := []policy.AuditEvent{event()}
	deny := policy.AuditEvent{
		Time: evs[0].Time, Door: "vpn", Event: "enroll", Client: netip.MustParseAddrPort("[::1]:5555"),
		// Denied at the trust step: the leaf is named, never classified.
		Decision: policy.Decision{Code: policy.CodeRevoked, Reason: "certificate revoked",
			Identity: policy.Identity{Serial: "TH-0001", CN: "thermostat-0001", Fingerprint: "aa", CertSerial: "3c4d",
				Subject: "CN=thermostat-0001,OU=devices,SERIALNUMBER=TH-0001", Issuer: "CN=Device CA,O=Example"}},
		Duration: 3 * time.Millisecond,
	}
	evs = append(evs, deny)
	var got []byte
	for i := range evs {
		var err error
		if got, err = AppendJSON(got, &evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	golden := filepath.Join("testdata", "events.golden.jsonl")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if bytes.Contains(got, []byte("secret")) {
		t.Error("a Wi-Fi Class (possibly secret) leaked into the audit line")
	}
	for l := range bytes.Lines(got) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
	}
}

// maxAppendAllocs bounds AppendJSON's allocations per event (the time and
// address texts, json.Marshal's result): it runs on the writer goroutine,
// not the door, but must not grow with the event.
const maxAppendAllocs = 4

func TestAppendAllocsBounded(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	ev := event()
	big := event()
	for i := range 64 {
		big.Decision.Groups = append(big.Decision.Groups, fmt.Sprintf("cn=group-%d,ou=groups,dc=example,dc=com", i))
	}
	buf := make([]byte, 0, 16<<10)
	for _, tc := range []struct {
		name string
		ev   *policy.AuditEvent
	}{{"typical", &ev}, {"66 groups", &big}} {
		n := testing.AllocsPerRun(50, func() { buf, _ = AppendJSON(buf[:0], tc.ev) })
		if n > maxAppendAllocs {
			t.Errorf("AppendJSON (%s): %v allocs per event, want at most %d", tc.name, n, maxAppendAllocs)
		}
	}
}

func run(t *testing.T, w *Writer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "audit.jsonl")
	w, err := New(Config{File: file, MaxSize: 4096, Keep: 2, Queue: 1000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, w)
	ev := event()
	one, _ := AppendJSON(nil, &ev)
	total := 4096/len(one)*4 + 1 // four files' worth
	for range total {
		w.Audit(ev)
	}
	stop()
	if st := w.Stats(); st.Written != uint64(total) || st.Dropped != 0 || st.Errors != 0 {
		t.Fatalf("stats %+v, want %d written", st, total)
	}
	names, _ := filepath.Glob(file + "*")
	if len(names) != 3 {
		t.Fatalf("files %v, want audit.jsonl, .1, .2", names)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 4096 {
			t.Errorf("%s: %d bytes > max size", n, len(b))
		}
		if len(b)%len(one) != 0 {
			t.Errorf("%s: partial line", n)
		}
	}
	if _, err := os.Stat(file + ".3"); err == nil {
		t.Error("kept more than keep=2 rotated files")
	}
}

// blockingWriter blocks every Write until released.
type blockingWriter struct {
	mu      sync.Mutex
	release chan struct{}
	buf     bytes.Buffer
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func TestDropWhenFullNeverBlocks(t *testing.T) {
	bw := &blockingWriter{release: make(chan struct{})}
	// FlushEvery is long: the first flush comes at stop, after release.
	w, err := New(Config{Output: bw, Queue: 4, FlushEvery: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := event()
	// Not running yet: the queue takes 4, the rest are dropped, nothing blocks.
	start := time.Now()
	for range 10 {
		w.Audit(ev)
	}
	if time.Since(start) > time.Second {
		t.Fatal("Audit blocked")
	}
	if st := w.Stats(); st.Dropped != 6 || st.Queued != 4 {
		t.Fatalf("stats %+v, want 6 dropped, 4 queued", st)
	}
	stop := run(t, w)
	close(bw.release)
	stop()
	if st := w.Stats(); st.Written != 4 {
		t.Fatalf("stats %+v, want 4 written (drained at stop)", st)
	}
	if n := strings.Count(bw.buf.String(), "\n"); n != 4 {
		t.Fatalf("%d lines written, want 4", n)
	}
	w.Audit(ev) // after stop: dropped, not blocked
	if st := w.Stats(); st.Dropped != 7 {
		t.Fatalf("after stop: %+v", st)
	}
}

func TestNewErrors(t *testing.T) {
	for _, c := range []Config{{}, {File: "x", MaxSize: 10}, {File: "x", Keep: -1}} {
		if _, err := New(c, nil); err == nil {
			t.Errorf("New(%+v): no error", c)
		}
	}
}

func BenchmarkAudit(b *testing.B) {
	w, _ := New(Config{Output: new(bytes.Buffer), Queue: 1}, nil)
	ev := event()
	b.ReportAllocs()
	for b.Loop() {
		w.Audit(ev)
	}
}
