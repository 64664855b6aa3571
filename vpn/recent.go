package vpn

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/policy/atomicfile"
)

// Restoring a large registry: wireguard-go precomputes a Diffie-Hellman
// value per peer under its peer lock (about 0.25 ms each on a small
// machine), so configuring 100,000 peers takes tens of seconds and cannot
// run in parallel inside one device. Instead the peers that had a
// handshake with this node recently go on the device first, the device
// comes up, and the rest are added in the background in chunks (the lock
// is released between chunks, so handshakes and enrollments proceed).
// The handshake times are kept per node in StateDir/recent-handshakes,
// written every minute and at shutdown.

const (
	// stagedRestoreFrom is the registry size from which the restore is
	// staged; smaller registries go on the device in one transaction.
	stagedRestoreFrom = 2000
	// recentWindow: a peer with a handshake this recent goes first.
	recentWindow = time.Hour
	// restoreChunk peers are added per background transaction.
	restoreChunk = 1000
)

func (s *Server) recentPath() string { return filepath.Join(s.cfg.StateDir, "recent-handshakes") }

// loadRecent reads the handshake times this node saved (fingerprint →
// time); a missing or damaged file is an empty map.
func (s *Server) loadRecent() map[string]time.Time {
	b, err := os.ReadFile(s.recentPath())
	if err != nil {
		return nil
	}
	out := make(map[string]time.Time)
	for _, line := range strings.Split(string(b), "\n") {
		fp, sec, ok := strings.Cut(line, " ")
		n, err := strconv.ParseInt(sec, 10, 64)
		if ok && err == nil && validFingerprint(fp) {
			out[fp] = time.Unix(n, 0)
		}
	}
	return out
}

// saveRecent writes the device's handshake times. Peers not on the device
// now keep the time saved before.
func (s *Server) saveRecent() {
	s.mu.Lock()
	dev := s.dev
	s.mu.Unlock()
	if dev == nil {
		return
	}
	text, err := dev.IpcGet()
	if err != nil {
		return
	}
	byKey := make(map[Key]time.Time)
	var cur Key
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "public_key":
			b, err := hex.DecodeString(v)
			if err == nil && len(b) == len(cur) {
				copy(cur[:], b)
			}
		case "last_handshake_time_sec":
			if n, _ := strconv.ParseInt(v, 10, 64); n != 0 {
				byKey[cur] = time.Unix(n, 0)
			}
		}
	}
	old := s.loadRecent()
	var b bytes.Buffer
	s.mu.Lock()
	for fp, r := range s.peers {
		t, ok := byKey[r.PublicKey]
		if !ok {
			t, ok = old[fp]
		}
		if ok {
			fmt.Fprintf(&b, "%s %d\n", fp, t.Unix())
		}
	}
	s.mu.Unlock()
	if err := atomicfile.Write(s.recentPath(), b.Bytes(), 0o600); err != nil {
		s.log.Warn("vpn: handshake times not saved", "err", err)
	}
}

// restoreOrder splits the live peers into those configured before the
// device comes up and those added after it, recently active first. s.mu
// must be held.
func (s *Server) restoreOrder() (first []*record, later []string) {
	live := make([]*record, 0, len(s.peers))
	for _, r := range s.peers {
		if r.Suspended == nil {
			live = append(live, r)
		}
	}
	if len(live) < stagedRestoreFrom {
		return live, nil
	}
	recent := s.loadRecent()
	cut := time.Now().Add(-recentWindow)
	sort.Slice(live, func(i, j int) bool { return recent[live[i].Fingerprint].After(recent[live[j].Fingerprint]) })
	n := sort.Search(len(live), func(i int) bool { return !recent[live[i].Fingerprint].After(cut) })
	later = make([]string, 0, len(live)-n)
	for _, r := range live[n:] {
		later = append(later, r.Fingerprint)
	}
	return live[:n], later
}

// addLater puts the peers of later on the device in chunks; each is
// looked up again, so a peer suspended, removed or re-keyed meanwhile goes
// on as it is now (or not at all).
func (s *Server) addLater(ctx context.Context, wg *sync.WaitGroup, later []string) {
	if len(later) == 0 {
		close(s.allOnDevice)
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(s.allOnDevice)
		start := time.Now()
		for i := 0; i < len(later); i += restoreChunk {
			if ctx.Err() != nil {
				return
			}
			var w uapiWriter
			s.mu.Lock()
			for _, fp := range later[i:min(i+restoreChunk, len(later))] {
				if r := s.peers[fp]; r != nil && r.Suspended == nil {
					w.addPeer(r.PublicKey, r.addrs()...)
				}
			}
			if err := s.apply(&w); err != nil {
				s.log.Error("vpn: restore peers: device", "err", err)
			}
			s.mu.Unlock()
		}
		s.log.Info("vpn: every peer on the device", "added_after_up", len(later), "took", time.Since(start).Round(time.Millisecond))
	}()
}

// saveRecentEvery saves the handshake times every period until ctx is done.
func (s *Server) saveRecentEvery(ctx context.Context, wg *sync.WaitGroup, period time.Duration) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.saveRecent()
			}
		}
	}()
}

// PartialLoader is a Store that can read a few records by fingerprint
// (the shared registry): a node then restores the peers recently active
// on it before it reads the whole registry.
type PartialLoader interface {
	LoadSome(fps []string) ([]*PeerRecord, error)
}

// restoreRecentFirst, with a PartialLoader and saved handshake times,
// restores only the recently active peers and returns a function reading
// the whole registry (nil otherwise: restore as usual).
func (s *Server) restoreRecentFirst() (rest func() ([]*PeerRecord, error), asOf time.Time) {
	pl, ok := s.store.Store.(PartialLoader)
	if !ok {
		return nil, time.Time{}
	}
	cut := time.Now().Add(-recentWindow)
	var fps []string
	for fp, t := range s.loadRecent() {
		if t.After(cut) {
			fps = append(fps, fp)
		}
	}
	if len(fps) == 0 {
		return nil, time.Time{}
	}
	asOf = time.Now()
	recs, err := pl.LoadSome(fps)
	if err != nil {
		s.log.Warn("vpn: recently active peers not read first; reading the whole registry", "err", err)
		return nil, time.Time{}
	}
	s.mu.Lock()
	var ops filterOps
	for _, p := range recs {
		s.applyLocked(p, asOf, &ops)
	}
	s.flushLocked(&ops)
	s.mu.Unlock()
	s.log.Info("vpn: recently active peers restored first; the rest of the registry follows", "peers", len(recs))
	return func() ([]*PeerRecord, error) {
		recs, bad, err := s.store.Load()
		for _, q := range bad {
			s.log.Error("vpn: stored peer unreadable; not loaded", "record", q.Name, "why", q.Why)
		}
		return recs, err
	}, asOf
}

// restoreRest reads the whole registry in the background and takes it in
// like a resync, in chunks so that enrollments and handshakes proceed.
func (s *Server) restoreRest(ctx context.Context, wg *sync.WaitGroup, rest func() ([]*PeerRecord, error), asOf time.Time) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(s.allOnDevice)
		start := time.Now()
		recs, err := rest()
		if err != nil {
			s.log.Error("vpn: registry not read; the store's resync brings the rest", "err", err)
			return
		}
		for i := 0; i < len(recs) && ctx.Err() == nil; i += restoreChunk {
			chunk := recs[i:min(i+restoreChunk, len(recs))]
			s.mu.Lock()
			var ops filterOps
			var w uapiWriter
			for _, p := range chunk {
				if old := s.peers[p.Fingerprint]; old != nil {
					s.applyLocked(p, asOf, &ops) // restored first, or changed since
					continue
				}
				if r := s.takeInLocked(p); r != nil && r.Suspended == nil {
					w.addPeer(r.PublicKey, r.addrs()...)
					ops.set(r.Access, r.addrs())
				}
			}
			if err := s.apply(&w); err != nil {
				s.log.Error("vpn: restore peers: device", "err", err)
			}
			s.flushLocked(&ops)
			s.mu.Unlock()
		}
		s.log.Info("vpn: every peer on the device", "peers", len(recs), "took", time.Since(start).Round(time.Millisecond))
	}()
}

// takeInLocked adds a stored record this node does not hold to the maps
// and the pool (not the device); nil if its lease conflicts with a newer
// local one (the store's resync settles it). s.mu must be held.
func (s *Server) takeInLocked(p *PeerRecord) *record {
	o, ok := s.pool.offset(p.Address)
	if !ok || o < s.pool.first() || o > s.pool.last() {
		s.log.Error("vpn: stored peer's address is outside the pool", "fingerprint", p.Fingerprint, "address", p.Address.String())
		return nil
	}
	if _, taken := s.pool.used[o]; taken {
		return nil
	}
	if s.byKey[p.PublicKey] != nil {
		return nil
	}
	r := recordOf(p)
	r.offset = o
	r.Address, r.Address6 = s.pool.addrs(o)
	s.pool.used[o] = r.Fingerprint
	s.peers[r.Fingerprint] = r
	s.byKey[r.PublicKey] = r
	return r
}
