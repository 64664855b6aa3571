package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"
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
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	if fs.NArg() != 1 || fs.Arg(0) == "" {
		return &usageError{"usage: gatehouse peers remove [-config F] FINGERPRINT|IDENTITY|ADDRESS"}
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
