package vpn

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
	Identity  string
	Rule      string
	PublicKey Key
	Address   netip.Addr
	Address6  netip.Addr
	NotAfter  time.Time // certificate expiry
	Enrolled  time.Time
	Validated time.Time // last successful re-validation

	// Live state; zero when the device was not reachable.
	Endpoint      string
	LastHandshake time.Time
	RxBytes       uint64
	TxBytes       uint64
}

// ListPeers reads the peer registry in stateDir (read-only, as a running
// server leaves it) and, if uapiSocket is not empty and answers, adds each
// peer's live endpoint, latest handshake and byte counters. Peers are
// sorted by identity.
func ListPeers(ctx context.Context, stateDir, uapiSocket string) ([]PeerInfo, error) {
	dir := filepath.Join(stateDir, "peers")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("vpn: peers: %w", err)
	}
	var out []PeerInfo
	for _, e := range ents {
		fp, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !validFingerprint(fp) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("vpn: peers: %w", err)
		}
		var r record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("vpn: peers: %s: %w", e.Name(), err)
		}
		out = append(out, PeerInfo{Identity: r.Identity, Rule: r.Rule, PublicKey: r.PublicKey, Address: r.Address,
			Address6: r.Address6, NotAfter: r.NotAfter, Enrolled: r.Enrolled, Validated: r.Validated})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Identity < out[j].Identity })
	if uapiSocket == "" {
		return out, nil
	}
	live, err := uapiPeers(ctx, uapiSocket)
	if err != nil {
		return out, err
	}
	for i := range out {
		if l, ok := live[out[i].PublicKey]; ok {
			out[i].Endpoint, out[i].LastHandshake, out[i].RxBytes, out[i].TxBytes = l.Endpoint, l.LastHandshake, l.RxBytes, l.TxBytes
		}
	}
	return out, nil
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
