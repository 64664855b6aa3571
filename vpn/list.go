package vpn

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// PeerInfo describes one enrolled peer for admins: what the registry holds,
// and, when the device's UAPI socket answers, its live WireGuard state.
type PeerInfo struct {
	Fingerprint string
	Identity    string
	Rule        string
	PublicKey   Key
	Address     netip.Addr
	Address6    netip.Addr
	NotAfter    time.Time // certificate expiry
	Enrolled    time.Time
	Validated   time.Time   // last successful re-validation
	Suspended   *Suspension // set while re-validation denies the peer

	// Live state; zero when the device was not reachable.
	Endpoint      string
	LastHandshake time.Time
	RxBytes       uint64
	TxBytes       uint64
}

// Listing is what ListPeers found.
type Listing struct {
	Peers []PeerInfo // sorted by identity
	// Unreadable lists records that do not decode; a running server
	// quarantines them at its next start.
	Unreadable []Quarantined
	// Quarantined counts records kept aside in the registry's quarantine.
	Quarantined int
	// DeviceUp is set when the UAPI socket answered; DeviceErr says why
	// not otherwise (not running, stale socket after a crash, …).
	DeviceUp  bool
	DeviceErr error
}

// ListPeers reads the peer registry in stateDir (read-only, as a running
// server leaves it) and, if uapiSocket is not empty and answers, adds each
// peer's live endpoint, latest handshake and byte counters. A device that
// does not answer (not running; a socket left by a crash) is no error:
// the registry is listed and DeviceErr says why.
func ListPeers(ctx context.Context, stateDir, uapiSocket string) (*Listing, error) {
	st := NewFileStore(filepath.Join(stateDir, "peers"))
	recs, bad, err := st.Read()
	if err != nil && !errors.Is(err, fs.ErrNotExist) { // none: nobody enrolled yet
		return nil, fmt.Errorf("vpn: peers: %w", err)
	}
	l := &Listing{Unreadable: bad}
	if q, err := os.ReadDir(filepath.Join(st.Dir, "quarantine")); err == nil {
		l.Quarantined = len(q)
	}
	return listRecords(ctx, l, recs, uapiSocket), nil
}

// ListRecords is ListPeers over records read from another Store (the
// shared registry).
func ListRecords(ctx context.Context, recs []*PeerRecord, bad []Quarantined, uapiSocket string) *Listing {
	return listRecords(ctx, &Listing{Unreadable: bad}, recs, uapiSocket)
}

func listRecords(ctx context.Context, l *Listing, recs []*PeerRecord, uapiSocket string) *Listing {
	for _, r := range recs {
		l.Peers = append(l.Peers, PeerInfo{Fingerprint: r.Fingerprint, Identity: r.Identity, Rule: r.Rule, PublicKey: r.PublicKey,
			Address: r.Address, Address6: r.Address6, NotAfter: r.NotAfter, Enrolled: r.Enrolled, Validated: r.Validated,
			Suspended: r.Suspended})
	}
	sort.Slice(l.Peers, func(i, j int) bool { return l.Peers[i].Identity < l.Peers[j].Identity })
	if uapiSocket == "" {
		l.DeviceErr = errors.New("no UAPI socket")
		return l
	}
	live, err := uapiPeers(ctx, uapiSocket)
	if err != nil {
		l.DeviceErr = err
		return l
	}
	l.DeviceUp = true
	for i := range l.Peers {
		p := &l.Peers[i]
		if x, ok := live[p.PublicKey]; ok {
			p.Endpoint, p.LastHandshake, p.RxBytes, p.TxBytes = x.Endpoint, x.LastHandshake, x.RxBytes, x.TxBytes
		}
	}
	return l
}

// uapiPeers asks a WireGuard UAPI socket for its peers ("get=1").
func uapiPeers(ctx context.Context, socket string) (map[Key]PeerInfo, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("vpn: UAPI: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(5 * time.Second))
	}
	if _, err := c.Write([]byte("get=1\n\n")); err != nil {
		return nil, fmt.Errorf("vpn: UAPI: %w", err)
	}
	peers := map[Key]PeerInfo{}
	var cur *PeerInfo
	var curKey Key
	flush := func() {
		if cur != nil {
			peers[curKey] = *cur
		}
	}
	var sec, nsec int64
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			break // the blank line that ends the answer
		}
		switch k {
		case "errno":
			if v != "0" {
				return nil, fmt.Errorf("vpn: UAPI: errno %s", v)
			}
		case "public_key":
			flush()
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != len(curKey) {
				return nil, fmt.Errorf("vpn: UAPI: bad public_key")
			}
			copy(curKey[:], b)
			cur, sec, nsec = &PeerInfo{PublicKey: curKey}, 0, 0
		case "endpoint":
			if cur != nil {
				cur.Endpoint = v
			}
		case "last_handshake_time_sec", "last_handshake_time_nsec":
			if cur == nil {
				continue
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			if k == "last_handshake_time_sec" {
				sec = n
			} else {
				nsec = n
			}
			if sec != 0 {
				cur.LastHandshake = time.Unix(sec, nsec)
			}
		case "rx_bytes", "tx_bytes":
			if cur == nil {
				continue
			}
			n, _ := strconv.ParseUint(v, 10, 64)
			if k == "rx_bytes" {
				cur.RxBytes = n
			} else {
				cur.TxBytes = n
			}
		}
	}
	flush()
	return peers, sc.Err()
}
