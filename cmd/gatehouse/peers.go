package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/gatehouse/gatehouse/vpn"
)

// cmdPeers lists the VPN's enrolled peers: who, which rule, which address,
// until when, and — when the device is up — their latest handshake and
// traffic. It reads the state the server keeps; it changes nothing.
func cmdPeers(ctx context.Context, args []string, stdout io.Writer) error {
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
	sock := filepath.Join("/var/run/wireguard", iface+".sock")
	if _, err := os.Stat(sock); err != nil {
		sock = "" // device not up (or not here): registry only
	}
	peers, err := vpn.ListPeers(ctx, filepath.Join(l.cfg.Server.StateDir, "vpn"), sock)
	if err != nil {
		return fmt.Errorf("peers: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTITY\tRULE\tADDRESS\tCERT EXPIRES\tHANDSHAKE\tRX\tTX\tENDPOINT")
	now := time.Now()
	for _, p := range peers {
		hs := "never"
		if !p.LastHandshake.IsZero() {
			hs = now.Sub(p.LastHandshake).Round(time.Second).String() + " ago"
		}
		if sock == "" {
			hs = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", p.Identity, p.Rule, p.Address, p.NotAfter.UTC().Format("2006-01-02"), hs, p.RxBytes, p.TxBytes, p.Endpoint)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d peers\n", len(peers))
	return nil
}
