package directory

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeBackend answers every lookup after gate opens, counting calls.
type fakeBackend struct {
	calls atomic.Int64
	gate  chan struct{}
	err   error
	dn    string
}

func (f *fakeBackend) lookup(ctx context.Context, kind, filter string) (string, []string, error) {
	f.calls.Add(1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return "", nil, &UnavailableError{Err: ctx.Err()}
		}
	}
	if f.err != nil {
		return "", nil, f.err
	}
	if f.dn == "" {
		return "", nil, nil
	}
	return f.dn, []string{"cn=g," + filter}, nil
}
func (f *fakeBackend) check(context.Context) error { return nil }
func (f *fakeBackend) run(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}
func (f *fakeBackend) reload() error { return nil }
func (f *fakeBackend) close()        {}

func fakeDir(t testing.TB, fb *fakeBackend, mutate func(*Config)) *Directory {
	cfg := Config{Backend: "file", File: exampleLDIF, UserFilter: "(mail={email})"}
	if mutate != nil {
		mutate(&cfg)
	}
	d, err := New(cfg, nil)
	must(t, err)
	d.be = fb
	return d
}

func TestSingleflight(t *testing.T) {
	fb := &fakeBackend{gate: make(chan struct{}), dn: "cn=x"}
	d := fakeDir(t, fb, nil)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			dn, groups, err := d.Lookup(context.Background(), "user", map[string]string{"email": "a@x"})
			if err != nil || dn != "cn=x" || len(groups) != 1 {
				t.Errorf("%q %q %v", dn, groups, err)
			}
			groups[0] = "mutated" // callers own their slice
		})
	}
	waitJoined(t, d, 50) // all 50 share the one flight before it lands
	close(fb.gate)
	wg.Wait()
	if n := fb.calls.Load(); n != 1 {
		t.Fatalf("%d backend calls for 50 identical lookups", n)
	}
	_, groups, _ := d.Lookup(context.Background(), "user", map[string]string{"email": "a@x"})
	if groups[0] != "cn=g,(mail=a@x)" || fb.calls.Load() != 1 {
		t.Fatalf("cache hit: %q, %d calls", groups, fb.calls.Load())
	}
	// Fields the template does not use do not split the cache.
	d.Lookup(context.Background(), "user", map[string]string{"email": "a@x", "cn": "other"})
	if fb.calls.Load() != 1 {
		t.Fatal("unused field split the cache key")
	}
	if st := d.Stats(); st.Hits != 2 || st.Misses != 50 || st.Entries != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCallerCancelDoesNotCancelOthers(t *testing.T) {
	fb := &fakeBackend{gate: make(chan struct{}), dn: "cn=x"}
	d := fakeDir(t, fb, nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, err := d.Lookup(ctx, "user", map[string]string{"email": "a@x"})
		errc <- err
	}()
	for fb.calls.Load() == 0 {
		runtime.Gosched()
	}
	other := make(chan error, 1)
	go func() {
		_, _, err := d.Lookup(context.Background(), "user", map[string]string{"email": "a@x"})
		other <- err
	}()
	cancel()
	if err := <-errc; !IsUnavailable(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled caller: %v", err)
	}
	close(fb.gate)
	if err := <-other; err != nil {
		t.Fatalf("other caller: %v", err)
	}
}

func TestTimeoutBoundsLookup(t *testing.T) {
	fb := &fakeBackend{gate: make(chan struct{})} // never opens
	d := fakeDir(t, fb, func(c *Config) { c.Timeout = Duration{100 * time.Millisecond} })
	start := time.Now()
	_, _, err := d.Lookup(context.Background(), "user", map[string]string{"email": "a@x"})
	if !IsUnavailable(err) || time.Since(start) > time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
	d.Close()
}

func TestNegativeAndAmbiguousCached(t *testing.T) {
	fb := &fakeBackend{}
	d := fakeDir(t, fb, nil)
	for range 3 {
		dn, groups, err := d.Lookup(context.Background(), "user", map[string]string{"email": "none@x"})
		if dn != "" || groups != nil || err != nil {
			t.Fatalf("no entry: %q %q %v", dn, groups, err)
		}
	}
	if fb.calls.Load() != 1 {
		t.Fatalf("negative answer not cached: %d calls", fb.calls.Load())
	}
	fb2 := &fakeBackend{err: ambiguous(2)}
	d2 := fakeDir(t, fb2, nil)
	for range 3 {
		if _, _, err := d2.Lookup(context.Background(), "user", map[string]string{"email": "dup@x"}); !errors.Is(err, ErrAmbiguous) {
			t.Fatal(err)
		}
	}
	if fb2.calls.Load() != 1 {
		t.Fatalf("ambiguous answer not cached: %d calls", fb2.calls.Load())
	}
	// Outages are never cached.
	fb3 := &fakeBackend{err: unavailable("down")}
	d3 := fakeDir(t, fb3, nil)
	for range 3 {
		d3.Lookup(context.Background(), "user", map[string]string{"email": "a@x"})
	}
	if fb3.calls.Load() != 3 {
		t.Fatalf("outage cached: %d calls", fb3.calls.Load())
	}
}

func TestCacheBounded(t *testing.T) {
	fb := &fakeBackend{dn: "cn=x"}
	d := fakeDir(t, fb, func(c *Config) { c.CacheSize = 10 })
	for i := range 100 {
		d.Lookup(context.Background(), "user", map[string]string{"email": fmt.Sprint(i)})
	}
	if n := d.Stats().Entries; n > 10 {
		t.Fatalf("%d entries, bound 10", n)
	}
}

func TestCacheDisabled(t *testing.T) {
	fb := &fakeBackend{dn: "cn=x"}
	d := fakeDir(t, fb, func(c *Config) { c.CacheTTL = Duration{-1} })
	for range 3 {
		d.Lookup(context.Background(), "user", map[string]string{"email": "a"})
	}
	if fb.calls.Load() != 3 {
		t.Fatalf("%d calls with the cache disabled", fb.calls.Load())
	}
}

func TestCacheKeyNoForgery(t *testing.T) {
	tm, err := parseTemplate("(|(userPrincipalName={upn})(mail={email}))")
	must(t, err)
	a := appendKey(nil, "user", tm, map[string]string{"upn": "x\x001:y", "email": ""})
	b := appendKey(nil, "user", tm, map[string]string{"upn": "x", "email": "y"})
	if string(a) == string(b) {
		t.Fatal("keys collide")
	}
}

func TestBadKind(t *testing.T) {
	d := fakeDir(t, &fakeBackend{}, nil)
	if _, _, err := d.Lookup(context.Background(), "printer", nil); err == nil || IsUnavailable(err) {
		t.Fatalf("kind printer: %v", err)
	}
}

// waitJoined waits (bounded) until n lookups share the one flight in
// progress.
func waitJoined(t *testing.T, d *Directory, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.flights.mu.Lock()
		got := 0
		for _, fl := range d.flights.m {
			got = fl.joined
		}
		d.flights.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d lookups joined the flight, want %d", got, n)
		}
		runtime.Gosched()
	}
}
