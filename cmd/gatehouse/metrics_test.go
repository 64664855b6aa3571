package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/gatehouse/gatehouse/directory"
	"github.com/gatehouse/gatehouse/netlimit"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/audit"
	"github.com/gatehouse/gatehouse/policy/metric"
	"github.com/gatehouse/gatehouse/policy/reval"
	"github.com/gatehouse/gatehouse/policy/revocation"
	"github.com/gatehouse/gatehouse/radius"
	"github.com/gatehouse/gatehouse/vpn"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func hist(ds ...time.Duration) metric.Snapshot {
	var h metric.Histogram
	for _, d := range ds {
		h.Observe(d)
	}
	return h.Snapshot()
}

type fakeVPN struct{}

func (fakeVPN) Stats() vpn.Stats {
	return vpn.Stats{Peers: 3, Suspended: 1, Quarantined: 2, Leases: 3, PoolSize: 65533, Flows: 7, Drops: map[string]uint64{"not_allowed": 5, "spoofed_source": 1}}
}

func (fakeVPN) DeviceStats() (vpn.DeviceStats, error) {
	return vpn.DeviceStats{RxBytes: 1000, TxBytes: 2000, Handshaked: 2, LatestHandshake: t0.Add(-42 * time.Second)}, nil
}

func (fakeVPN) Enrollments() map[string]uint64 {
	return map[string]uint64{"allowed": 3, "denied": 1, "failed": 0}
}

func (fakeVPN) EnrollLatency() metric.Snapshot { return hist(20 * time.Millisecond) }

// TestCollectors gathers every collector from canned snapshots into one
// registry and compares the exposition with a golden file (-update).
func TestCollectors(t *testing.T) {
	now := func() time.Time { return t0 }
	var dirQ metric.Histogram
	dirQ.Observe(3 * time.Millisecond)
	dc := newDecisionCounter(nil)
	for _, ev := range []policy.AuditEvent{
		{Door: "wifi", Event: "authenticate", Allowed: true, Decision: policy.Decision{Allowed: true, Rule: "engineering"}},
		{Door: "wifi", Event: "authenticate", Allowed: true, Decision: policy.Decision{Allowed: true, Rule: "engineering"}},
		{Door: "wifi", Event: "authenticate", Decision: policy.Decision{Code: policy.CodeNoRule, Identity: policy.Identity{Name: "frank@example.com", CertSerial: "abcd"}}},
		{Door: "vpn", Event: "enroll", Decision: policy.Decision{Allowed: true, Rule: "engineering"}}, // refused by the door
		{Door: "vpn", Event: "revalidate", Decision: policy.Decision{Code: policy.CodeRevoked, Rule: ""}},
	} {
		dc.Audit(ev)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(
		newRadiusCollector(func() radius.Stats {
			return radius.Stats{
				Drops: map[string]uint64{radius.DropBadMA: 3, radius.DropUnknownClient: 1, radius.DropAccountingWriteFail: 1},
				DropsByClient: map[string]map[string]uint64{
					"ap-floor1": {radius.DropBadMA: 2},
					"ap-floor2": {radius.DropBadMA: 1},
				},
				Requests: map[string]uint64{"access_request": 40, "status_server": 1},
				Accepts:  4, Rejects: 1, Challenges: 35, CacheHits: 3, AccountingRecords: 0,
				AccountingDuplicates: map[string]uint64{"ap-floor1": 2},
				SessionsLive:         1, SessionsOpened: 6, SessionsEvicted: 0, SessionsExpired: 1,
				TLSSessions: 3, TLSResumptions: 2,
				SessionBytes: 52224, SessionsEvictedMemory: 2, KernelDrops: 7,
				AuthLatency: hist(4*time.Millisecond, 8*time.Millisecond, 30*time.Millisecond, 120*time.Millisecond, 2*time.Second),
			}
		}),
		newDirectoryCollector(func() directory.Stats {
			return directory.Stats{Hits: 10, Misses: 1, Queries: 1, Entries: 1}
		}, &dirQ, func() error { return nil }),
		newRevocationCollector(func() revocation.Stats {
			return revocation.Stats{OCSPExchanges: 2, OCSPCacheHits: 5, CRLs: []revocation.CRLStatus{
				{URL: "http://pki.example.com/int.crl", CA: "CN=Employee Issuing CA", ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0.Add(23 * time.Hour), Entries: 1},
				{URL: "http://pki.example.com/dev.crl", CA: "CN=Device CA", Failures: 3},
			}}
		}, func() []policy.CRLFile {
			return []policy.CRLFile{{CA: "CN=Device CA", File: "/etc/gatehouse/device.crl", ThisUpdate: t0.Add(-2 * time.Hour), NextUpdate: t0.Add(12 * time.Hour), Entries: 4}}
		}, now),
		newVPNCollector(fakeVPN{}, now),
		newHeldCollector(func() map[policy.Door]reval.Held {
			return map[policy.Door]reval.Held{policy.DoorVPN: {Door: policy.DoorVPN, Count: 23, Live: 24}}
		}, policy.DoorWiFi, policy.DoorVPN),
		dc,
		newAuditCollector(func() audit.Stats { return audit.Stats{Written: 5, Dropped: 1} }),
		newListenerCollector(func() map[string]netlimit.Stats {
			return map[string]netlimit.Stats{"metrics": {Open: 1}, "enroll": {Open: 16, Rejected: 7}}
		}),
		newCoresCollector(func() (int, int, uint64) { return 1, 8, 3 }),
	)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&got, mf); err != nil {
			t.Fatal(err)
		}
	}
	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		os.WriteFile(golden, got.Bytes(), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, bytes.NewReader(want)); err != nil {
		t.Error(err)
	}
	if s := got.String(); strings.Contains(s, "frank") || strings.Contains(s, "abcd") {
		t.Error("an identity or a serial reached a label")
	}
}

// TestDecisionAuditAllocs: counting and queueing a decision allocates
// nothing once its label combination exists (the door's path).
func TestDecisionAuditAllocs(t *testing.T) {
	w, err := audit.New(audit.Config{Output: new(bytes.Buffer), Queue: 1 << 16}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dc := newDecisionCounter(w)
	ev := policy.AuditEvent{Door: "wifi", Event: "authenticate", Allowed: true,
		Decision: policy.Decision{Allowed: true, Rule: "engineering", Groups: []string{"cn=engineering"}}}
	dc.Audit(ev)
	if n := testing.AllocsPerRun(1000, func() { dc.Audit(ev) }); n != 0 {
		t.Errorf("decision audit: %v allocs", n)
	}
}
