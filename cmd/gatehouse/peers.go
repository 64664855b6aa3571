package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/gatehouse/gatehouse/vpn"
)

// cmdPeers lists the VPN's enrolled peers: who, which rule, which address,
// until when, whether suspended and why, and — when the device is up —
// their latest handshake and traffic. It reads the state the server keeps;
// it changes nothing. When the device does not answer (not running, or a
// socket left behind by a crash), it lists the registry and says so.
// `gatehouse peers remove` deletes peers.
func cmdPeers(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "remove" {
		return cmdPeersRemove(ctx, args[1:], stdout)
	}
	fs := newFlags("peers", stdout)
	cfgFile := configFlag(fs)
	asJSON := fs.Bool("json", false, "print the peers as one JSON object (schema: docs/cli.md)")
	l, err := parseAndLoad(fs, args, cfgFile)
	if err != nil {
		return err
	}
	iface := l.cfg.VPN.Interface
	if iface == "" {
		iface = "gh0"
	}
	sock := filepath.Join(uapiDir, iface+".sock")
	lst, err := listPeers(ctx, l, sock) // file or shared registry (store_vpn.go)
	if err != nil {
		return fmt.Errorf("peers: %w", err)
	}
	if *asJSON {
		return writeJSON(stdout, peersJSONOf(lst, iface, filepath.Join(l.cfg.Server.StateDir, "vpn", "peers", "quarantine")), nil)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTITY\tRULE\tADDRESS\tCERT EXPIRES\tSTATE\tHANDSHAKE\tRX\tTX\tENDPOINT")
	now := time.Now()
	suspended := 0
	for _, p := range lst.Peers {
		hs := "never"
		if !p.LastHandshake.IsZero() {
			hs = now.Sub(p.LastHandshake).Round(time.Second).String() + " ago"
		}
		if !lst.DeviceUp {
			hs = "-"
		}
		state := "active"
		if s := p.Suspended; s != nil {
			suspended++
			state = fmt.Sprintf("suspended since %s: %s (%s)", s.Since.UTC().Format("2006-01-02 15:04"), s.Code, s.Reason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", p.Identity, p.Rule, p.Address, p.NotAfter.UTC().Format("2006-01-02"),
			state, hs, p.RxBytes, p.TxBytes, p.Endpoint)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d peers (%d suspended)\n", len(lst.Peers), suspended)
	if !lst.DeviceUp {
		fmt.Fprintf(stdout, "device %s not running (%v): live state not shown\n", iface, lst.DeviceErr)
	}
	for _, u := range lst.Unreadable {
		fmt.Fprintf(stdout, "unreadable record %s: %s (quarantined at the server's next start)\n", u.Name, u.Why)
	}
	if lst.Quarantined > 0 {
		fmt.Fprintf(stdout, "%d records in quarantine (%s)\n", lst.Quarantined, filepath.Join(l.cfg.Server.StateDir, "vpn", "peers", "quarantine"))
	}
	return nil
}

// uapiDir is where WireGuard UAPI sockets live.
var uapiDir = "/var/run/wireguard"

// cmdPeersRemove deletes the VPN peers matching a certificate fingerprint,
// an identity or a tunnel address: through the running server (control
// socket) when there is one, else by editing the registry directly.
func cmdPeersRemove(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("peers remove", stdout)
	cfgFile := configFlag(fs)
	if err := parseFlagsArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || fs.Arg(0) == "" {
		return &usageError{"usage: gatehouse peers remove [--config FILE] FINGERPRINT|IDENTITY|ADDRESS"}
	}
	match := fs.Arg(0)
	dir, err := stateDirOf(*cfgFile)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var lines []string
	resp, err := callControl(ctx, dir, controlRequest{Op: "peers-remove", Match: match})
	switch {
	case errors.Is(err, errNoServer):
		lines, err = removeStoredPeers(*cfgFile, dir, match) // file or shared registry (store_vpn.go)
		if err != nil {
			return fmt.Errorf("peers remove: %w", err)
		}
		lines = append(lines, "(no server running: the registry was edited directly)")
	case err != nil:
		return fmt.Errorf("peers remove: %w", err)
	case !resp.OK:
		return fmt.Errorf("peers remove: %s", resp.Error)
	default:
		lines = resp.Lines
	}
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	return nil
}

// peersJSON is `gatehouse peers --json`. The schema is documented in
// docs/cli.md; fields are only ever added. Times are RFC 3339 UTC; a time
// that never happened is omitted.
type peersJSON struct {
	Interface   string         `json:"interface"`
	DeviceUp    bool           `json:"device_up"`
	DeviceError string         `json:"device_error,omitempty"` // why the live state is missing
	Peers       []peerJSON     `json:"peers"`
	Suspended   int            `json:"suspended"`
	Unreadable  []peerRecordJS `json:"unreadable"`
	Quarantined int            `json:"quarantined"`
	Quarantine  string         `json:"quarantine_dir"`
}

type peerJSON struct {
	Identity      string        `json:"identity"`
	Rule          string        `json:"rule"`
	Fingerprint   string        `json:"fingerprint"`
	PublicKey     string        `json:"public_key"`
	Address       string        `json:"address"`
	Address6      string        `json:"address6,omitempty"`
	CertExpires   string        `json:"cert_expires"`
	Enrolled      string        `json:"enrolled,omitempty"`
	Validated     string        `json:"validated,omitempty"`
	Suspended     *peerSuspJSON `json:"suspended"` // null: active
	Endpoint      string        `json:"endpoint,omitempty"`
	LastHandshake string        `json:"last_handshake,omitempty"`
	RxBytes       uint64        `json:"rx_bytes"`
	TxBytes       uint64        `json:"tx_bytes"`
}

type peerSuspJSON struct {
	Since  string `json:"since"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

type peerRecordJS struct {
	Name string `json:"name"`
	Why  string `json:"why"`
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func peersJSONOf(lst *vpn.Listing, iface, quarantine string) *peersJSON {
	out := &peersJSON{Interface: iface, DeviceUp: lst.DeviceUp, Peers: []peerJSON{}, Unreadable: []peerRecordJS{},
		Quarantined: lst.Quarantined, Quarantine: quarantine}
	if !lst.DeviceUp && lst.DeviceErr != nil {
		out.DeviceError = lst.DeviceErr.Error()
	}
	for _, p := range lst.Peers {
		j := peerJSON{Identity: p.Identity, Rule: p.Rule, Fingerprint: p.Fingerprint, PublicKey: p.PublicKey.String(),
			Address: p.Address.String(), CertExpires: rfc3339(p.NotAfter), Enrolled: rfc3339(p.Enrolled),
			Validated: rfc3339(p.Validated), Endpoint: p.Endpoint, LastHandshake: rfc3339(p.LastHandshake),
			RxBytes: p.RxBytes, TxBytes: p.TxBytes}
		if p.Address6.IsValid() {
			j.Address6 = p.Address6.String()
		}
		if s := p.Suspended; s != nil {
			out.Suspended++
			j.Suspended = &peerSuspJSON{rfc3339(s.Since), s.Code, s.Reason}
		}
		out.Peers = append(out.Peers, j)
	}
	for _, u := range lst.Unreadable {
		out.Unreadable = append(out.Unreadable, peerRecordJS{u.Name, u.Why})
	}
	return out
}
