package vpn

import (
	"bufio"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/metric"
)

// SetAuditor makes the server report every enrollment decision and every
// peer that re-validation removes, suspends or changes to a (nil = none).
// It may be called at any time. a.Audit must not block.
func (s *Server) SetAuditor(a policy.Auditor) {
	if a == nil {
		s.auditor.Store(nil)
		return
	}
	s.auditor.Store(&a)
}

// Serving reports whether the device and the enrollment API are up and the
// server is not shutting down (for readiness checks; Ready is the channel).
func (s *Server) Serving() error {
	select {
	case <-s.ready:
	default:
		return errors.New("vpn: not up")
	}
	if s.stopping.Load() {
		return errors.New("vpn: shutting down")
	}
	return nil
}

// EnrollLatency is a snapshot of enrollment request durations (from the
// request to the answer, allowed or not).
func (s *Server) EnrollLatency() metric.Snapshot { return s.enrollLatency.Snapshot() }

// Enrollments returns the number of enrollment requests by outcome:
// "allowed", "denied" (by policy) or "failed" (bad request, no free
// address, device error).
func (s *Server) Enrollments() map[string]uint64 {
	return map[string]uint64{
		"allowed": s.enrolls[enrollAllowed].Load(),
		"denied":  s.enrolls[enrollDenied].Load(),
		"failed":  s.enrolls[enrollFailed].Load(),
	}
}

const (
	enrollAllowed = iota
	enrollDenied
	enrollFailed
)

func (s *Server) audit(event string, client netip.AddrPort, peer netip.Addr, d *policy.Decision, allowed bool, reason string, start time.Time) {
	a := s.auditor.Load()
	if a == nil {
		return
	}
	now := time.Now()
	ev := policy.AuditEvent{
		Time: now, Door: "vpn", Event: event, Client: client, Peer: peer,
		Allowed: allowed, Reason: reason, Decision: *d, Duration: now.Sub(start),
	}
	ev.Decision.Chain, ev.Decision.Revocation, ev.Decision.VPN = nil, nil, nil
	(*a).Audit(ev)
}

// DeviceStats are the WireGuard device's totals over all peers.
type DeviceStats struct {
	RxBytes, TxBytes uint64    // bytes received from and sent to peers
	Handshaked       int       // peers with a handshake in the last 3 minutes (connected)
	LatestHandshake  time.Time // most recent handshake of any peer; zero if none
}

// DeviceStats reads the device's counters (over UAPI). It is for scrapes,
// not hot paths. Before Run has made the device, it returns zeros.
func (s *Server) DeviceStats() (DeviceStats, error) {
	s.mu.Lock()
	dev := s.dev
	s.mu.Unlock()
	if dev == nil {
		return DeviceStats{}, nil
	}
	text, err := dev.IpcGet()
	if err != nil {
		return DeviceStats{}, err
	}
	return parseDeviceStats(text, time.Now()), nil
}

func parseDeviceStats(text string, now time.Time) DeviceStats {
	var st DeviceStats
	var sec int64
	flush := func() {
		if sec == 0 {
			return
		}
		t := time.Unix(sec, 0)
		if now.Sub(t) <= 3*time.Minute {
			st.Handshaked++
		}
		if t.After(st.LatestHandshake) {
			st.LatestHandshake = t
		}
		sec = 0
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "public_key":
			flush()
		case "rx_bytes":
			n, _ := strconv.ParseUint(v, 10, 64)
			st.RxBytes += n
		case "tx_bytes":
			n, _ := strconv.ParseUint(v, 10, 64)
			st.TxBytes += n
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	flush()
	return st
}
