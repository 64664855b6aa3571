package reval

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

func TestClassify(t *testing.T) {
	allowVPN := policy.Decision{Allowed: true, Rule: "r", VPN: &policy.VPNAccess{}}
	allowWiFi := policy.Decision{Allowed: true, Rule: "r", WiFi: policy.WiFi{Permitted: true}}
	deny := func(c policy.Code) policy.Decision { return policy.Decision{Code: c} }
	tests := []struct {
		name string
		d    policy.Decision
		door policy.Door
		want Class
	}{
		{"allowed vpn", allowVPN, policy.DoorVPN, Allow},
		{"allowed wifi", allowWiFi, policy.DoorWiFi, Allow},
		{"vpn rule at wifi", allowVPN, policy.DoorWiFi, CutPolicy},
		{"wifi rule at vpn", allowWiFi, policy.DoorVPN, CutPolicy},
		{"revoked", deny(policy.CodeRevoked), policy.DoorVPN, CutCertificate},
		{"expired", deny(policy.CodeExpired), policy.DoorVPN, CutCertificate},
		{"untrusted", deny(policy.CodeUntrusted), policy.DoorWiFi, CutCertificate},
		{"bad usage", deny(policy.CodeBadUsage), policy.DoorWiFi, CutCertificate},
		{"no certificate", deny(policy.CodeNoCertificate), policy.DoorWiFi, CutCertificate},
		{"no rule", deny(policy.CodeNoRule), policy.DoorVPN, CutPolicy},
		{"rule denies", deny(policy.CodeRuleDenies), policy.DoorVPN, CutPolicy},
		{"not in directory", deny(policy.CodeNotInDirectory), policy.DoorVPN, CutPolicy},
		{"no identity", deny(policy.CodeNoIdentity), policy.DoorVPN, CutPolicy},
		{"directory error", deny(policy.CodeDirectoryError), policy.DoorVPN, CutPolicy},
		{"directory down", deny(policy.CodeDirectoryUnavailable), policy.DoorVPN, Transient},
		{"revocation unknown", deny(policy.CodeRevocationUnknown), policy.DoorWiFi, Transient},
		{"no policy", deny(policy.CodePolicyUnavailable), policy.DoorWiFi, Transient},
		{"unknown code", deny(policy.Code(200)), policy.DoorWiFi, CutPolicy},
	}
	for _, tt := range tests {
		d := tt.d.At(tt.door)
		if got := Classify(&d); got != tt.want {
			t.Errorf("%s: Classify = %v, want %v", tt.name, got, tt.want)
		}
	}
	d := allowVPN.At(policy.DoorWiFi)
	if d.Code != policy.CodeDoorNotPermitted || d.Allowed || d.Reason != "rule r gives no Wi-Fi access" {
		t.Errorf("At(wifi) of a VPN-only rule = %+v", d)
	}
}

// item is a test item: its decision code, and whether it is live.
type item struct {
	code policy.Code
	rule string
}

func items(live int, codes map[policy.Code]int) []Item[item] {
	var out []Item[item]
	for c, n := range codes {
		for range n {
			out = append(out, Item[item]{V: item{code: c}, Live: true})
		}
	}
	for len(out) < live {
		out = append(out, Item[item]{V: item{code: policy.CodeAllowed}, Live: true})
	}
	return out
}

func judge(_ context.Context, it item) policy.Decision {
	if it.code == policy.CodeAllowed {
		return policy.Decision{Allowed: true, Rule: "ok", VPN: &policy.VPNAccess{}}
	}
	return policy.Decision{Code: it.code, Rule: it.rule}
}

// run runs e over its and returns the report and the outcomes acted on.
func run(e *Engine, its []Item[item]) (Report, map[policy.Code][2]int) {
	var mu = make(chan struct{}, 1)
	got := map[policy.Code][2]int{} // code → {cut, kept}
	rep := Run(context.Background(), e, policy.DoorVPN, its, judge, func(_ context.Context, it item, o Outcome) {
		mu <- struct{}{}
		defer func() { <-mu }()
		c := got[it.code]
		if o.Cut() {
			c[0]++
		} else {
			c[1]++
		}
		got[it.code] = c
	})
	return rep, got
}

func TestGuardThresholds(t *testing.T) {
	tests := []struct {
		name     string
		live     int
		codes    map[policy.Code]int
		wantHeld int
	}{
		{"19 live, 19 cuts: too few to guard", 19, map[policy.Code]int{policy.CodeNoRule: 19}, 0},
		{"20 live, 5 cuts: at the fraction", 20, map[policy.Code]int{policy.CodeNoRule: 5}, 0},
		{"20 live, 6 cuts: held", 20, map[policy.Code]int{policy.CodeNoRule: 6}, 6},
		{"20 live, 20 no_rule: held", 20, map[policy.Code]int{policy.CodeNoRule: 20}, 20},
		{"mixed policy codes count together", 40, map[policy.Code]int{policy.CodeNoRule: 6, policy.CodeDoorNotPermitted: 3, policy.CodeNotInDirectory: 2}, 11},
		{"certificate cuts do not count", 20, map[policy.Code]int{policy.CodeRevoked: 15, policy.CodeNoRule: 5}, 0},
		{"transient never cuts", 20, map[policy.Code]int{policy.CodeDirectoryUnavailable: 20}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := Default(nil)
			rep, got := run(e, items(tt.live, tt.codes))
			if rep.Held != tt.wantHeld {
				t.Fatalf("held %d, want %d (report %v)", rep.Held, tt.wantHeld, rep)
			}
			for c, n := range tt.codes {
				d := policy.Decision{Code: c}
				cls := Classify(&d)
				want := [2]int{n, 0} // all cut
				if cls == Transient || (cls == CutPolicy && tt.wantHeld > 0) {
					want = [2]int{0, n}
				}
				if got[c] != want {
					t.Errorf("%v: cut/kept = %v, want %v", c, got[c], want)
				}
			}
			if h := e.Held(); (len(h) > 0) != (tt.wantHeld > 0) || (tt.wantHeld > 0 && h[policy.DoorVPN].Count != tt.wantHeld) {
				t.Errorf("Held() = %+v", h)
			}
		})
	}
}

func TestRevocationPassesHeldRun(t *testing.T) {
	e := Default(nil)
	rep, got := run(e, items(40, map[policy.Code]int{policy.CodeNoRule: 30, policy.CodeRevoked: 3, policy.CodeExpired: 2}))
	if rep.Held != 30 || rep.CutCert != 5 {
		t.Fatalf("report %v", rep)
	}
	if got[policy.CodeRevoked] != [2]int{3, 0} || got[policy.CodeExpired] != [2]int{2, 0} || got[policy.CodeNoRule] != [2]int{0, 30} {
		t.Fatalf("cut/kept %v", got)
	}
}

func TestSuspendedItemsAreNotPopulation(t *testing.T) {
	// 10 live and 30 already suspended: the population is 10, below the
	// guard's minimum, so the 6 new policy cuts go through.
	its := items(10, map[policy.Code]int{policy.CodeNoRule: 6})
	for range 30 {
		its = append(its, Item[item]{V: item{code: policy.CodeNoRule}})
	}
	rep, _ := run(Default(nil), its)
	if rep.Live != 10 || rep.Held != 0 || rep.CutPolicy != 6 {
		t.Fatalf("report %v", rep)
	}
}

func TestConfirmReleasesOnlySamePolicy(t *testing.T) {
	var cur atomic.Value
	cur.Store("A")
	e, err := New(Config{PolicyID: func() any { return cur.Load() }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Confirm(); !errors.Is(err, ErrNothingHeld) {
		t.Fatalf("Confirm with nothing held: %v", err)
	}
	its := items(20, map[policy.Code]int{policy.CodeNoRule: 10})
	if rep, _ := run(e, its); rep.Held != 10 {
		t.Fatalf("not held: %v", rep)
	}
	// Runs again under A: still held.
	if rep, _ := run(e, its); rep.Held != 10 {
		t.Fatalf("not held on the second run: %v", rep)
	}
	held, err := e.Confirm()
	if err != nil || held[policy.DoorVPN].Count != 10 {
		t.Fatalf("Confirm = %v, %v", held, err)
	}
	if rep, got := run(e, its); rep.Held != 0 || rep.CutPolicy != 10 || got[policy.CodeNoRule] != [2]int{10, 0} {
		t.Fatalf("confirmed run: %v %v", rep, got)
	}
	if len(e.Held()) != 0 {
		t.Fatalf("Held after confirmed run: %v", e.Held())
	}
	// A different policy needs its own confirmation.
	cur.Store("B")
	if rep, _ := run(e, its); rep.Held != 10 {
		t.Fatalf("policy B not held: %v", rep)
	}
	// A hold under B is not reported once B is no longer in force.
	cur.Store("C")
	if len(e.Held()) != 0 {
		t.Fatalf("stale hold reported: %v", e.Held())
	}
}

func TestConcurrencyBound(t *testing.T) {
	e, _ := New(Config{Concurrency: 3}, nil)
	var in, peak atomic.Int32
	its := items(30, nil)
	Run(context.Background(), e, policy.DoorWiFi, its, func(ctx context.Context, it item) policy.Decision {
		n := in.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		in.Add(-1)
		return policy.Decision{Allowed: true, WiFi: policy.WiFi{Permitted: true}}
	}, func(context.Context, item, Outcome) {})
	if p := peak.Load(); p != 3 {
		t.Fatalf("peak concurrency %d, want 3", p)
	}
}

func TestTimeoutIsTransient(t *testing.T) {
	e, _ := New(Config{AuthTimeout: 10 * time.Millisecond}, nil)
	var o Outcome
	Run(context.Background(), e, policy.DoorVPN, []Item[item]{{Live: true}}, func(ctx context.Context, _ item) policy.Decision {
		<-ctx.Done()
		return policy.Decision{Code: policy.CodeNotInDirectory, Reason: "lookup cancelled"}
	}, func(_ context.Context, _ item, out Outcome) { o = out })
	if o.Class != Transient || o.Cut() {
		t.Fatalf("timed-out judge: %+v", o)
	}
}

func TestConfigValidation(t *testing.T) {
	if _, err := New(Config{MaxCutFraction: -0.1}, nil); err == nil {
		t.Fatal("negative fraction accepted")
	}
	e, _ := New(Config{MaxCutFraction: 1}, nil)
	if rep, _ := run(e, items(20, map[policy.Code]int{policy.CodeNoRule: 20})); rep.Held != 0 {
		t.Fatalf("fraction 1 still guards: %v", rep)
	}
}

// TestRunJudgesUnderOnePolicy: the policy is swapped for one that admits
// nobody while a run judges (a reload during a periodic or triggered run).
// Judged across the swap, the run would see 2 cuts of 20 — no mass cut —
// and make them, and the next run would find too few live items for the
// guard. The run judges again under the new policy and holds all 20.
func TestRunJudgesUnderOnePolicy(t *testing.T) {
	var cur atomic.Int64 // the policy in force: 1 admits everyone, 2 nobody
	cur.Store(1)
	e, err := New(Config{Concurrency: 1, PolicyID: func() any { return cur.Load() }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	its := make([]Item[int], n)
	for i := range its {
		its[i] = Item[int]{V: i, Live: true}
	}
	var acted atomic.Int32
	judge := func(_ context.Context, i int) policy.Decision {
		if i == n-2 {
			cur.CompareAndSwap(1, 2) // the reload lands mid-run
		}
		if cur.Load() == 2 {
			return policy.Decision{Code: policy.CodeNoRule}
		}
		return policy.Decision{Allowed: true, Rule: "r", WiFi: policy.WiFi{Permitted: true}}
	}
	rep := Run(context.Background(), e, policy.DoorWiFi, its, judge, func(_ context.Context, _ int, o Outcome) {
		if o.Cut() {
			acted.Add(1)
		}
	})
	if rep.Held != n || rep.CutPolicy != 0 || rep.Allowed != 0 || acted.Load() != 0 {
		t.Fatalf("report %v, %d cut; want all %d held under the new policy", rep, acted.Load(), n)
	}
	if h := e.Held()[policy.DoorWiFi]; h.Count != n {
		t.Fatalf("Held %+v", h)
	}

	// A policy that changes during every attempt: nothing is decided.
	var flips atomic.Int64
	e2, _ := New(Config{Concurrency: 1, PolicyID: func() any { return flips.Load() / int64(n) }}, nil)
	rep = Run(context.Background(), e2, policy.DoorWiFi, its, func(_ context.Context, i int) policy.Decision {
		flips.Add(1)
		return policy.Decision{Code: policy.CodeNoRule}
	}, func(_ context.Context, _ int, o Outcome) {
		if o.Cut() {
			acted.Add(1)
		}
	})
	if rep.Transient != n || acted.Load() != 0 {
		t.Fatalf("policy changing throughout: report %v, %d cut", rep, acted.Load())
	}
}
