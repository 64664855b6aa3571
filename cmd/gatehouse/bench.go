package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/gatehouse/gatehouse/radius/radbench"
)

// cmdBench runs a load tool: `gatehouse bench radius ...`.
func cmdBench(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "radius" {
		return &usageError{"bench: usage: gatehouse bench radius --server HOST:PORT --secret S --cert F --key F [flags]"}
	}
	fs := newFlags("bench radius", stdout)
	var c radbench.Config
	fs.StringVar(&c.Addr, "server", "127.0.0.1:1812", "RADIUS authentication `address` (HOST:PORT)")
	secret := fs.String("secret", "", "shared `secret` (prefer --secret-file)")
	secretFile := fs.String("secret-file", "", "`file` holding the shared secret")
	fs.StringVar(&c.CertFile, "cert", "", "client certificate `file` (PEM, chain may follow)")
	fs.StringVar(&c.KeyFile, "key", "", "client private key `file` (PEM)")
	fs.StringVar(&c.CAFile, "ca", "", "verify the server against these roots (`file`); default: not verified")
	fs.StringVar(&c.ServerName, "server-name", "", "server `name` to check with --ca")
	fs.StringVar(&c.Identity, "identity", "", "EAP identity (default radbench)")
	fs.IntVar(&c.Concurrency, "concurrency", 8, "simultaneous supplicants")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to run")
	fs.IntVar(&c.Count, "count", 0, "stop after this many authentications instead")
	fs.Float64Var(&c.Rate, "rate", 0, "start at most this many logins per second, all supplicants together (default: as fast as they go); compares the server's CPU per login at one load")
	fs.StringVar(&c.TLSVersion, "tls", "", "TLS version: 1.2, 1.3 or empty for the best")
	fs.BoolVar(&c.Resume, "resume", false, "let supplicants resume TLS sessions")
	groups := fs.String("groups", "", "key exchange `groups` offered, in order: x25519, x25519mlkem768, p256, p384, p521 (default Go's: X25519MLKEM768 first)")
	fs.IntVar(&c.FragSize, "fragment-size", 0, "supplicant EAP-TLS fragment size (default the client's)")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "local server `pid` whose CPU time per authentication is reported")
	fs.DurationVar(&c.Progress, "progress", 5*time.Second, "interval of progress lines (negative: off)")
	fs.IntVar(&c.Flood, "flood", 0, "meanwhile send this many bogus conversation starts from one socket, as fast as possible (fairness test)")
	fs.StringVar(&c.FloodFrom, "flood-from", "", "local `address` of the flood socket (e.g. 127.0.0.2:0)")
	burst := fs.Int("burst", 0, "instead of logins, send this many Access-Requests back to back from one socket and count the answers")
	burstWait := fs.Duration("burst-wait", 10*time.Second, "how long to wait for the answers to --burst")
	fragFlood := fs.Int("fragment-flood", 0, "instead of logins, open this many conversations that each send --fragment-bytes of an unfinished TLS message (memory test; with --server-pid the server's RSS is reported)")
	fragBytes := fs.Int("fragment-bytes", 60000, "bytes of fragments each --fragment-flood conversation sends")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	s, err := readSecret("secret", *secret, *secretFile)
	if err != nil {
		return &usageError{"bench: " + err.Error()}
	}
	if *fragFlood > 0 {
		if s == "" {
			return &usageError{"bench: --secret (or --secret-file) is required"}
		}
		r, err := radbench.FragmentFlood(ctx, c.Addr, []byte(s), *fragFlood, *fragBytes, c.Concurrency)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		fmt.Fprint(stdout, r.String())
		if c.ServerPID > 0 {
			rss, peak, err := radbench.ProcRSS(c.ServerPID)
			if err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			fmt.Fprintf(stdout, "server RSS %.1f MiB, peak %.1f MiB\n", float64(rss)/(1<<20), float64(peak)/(1<<20))
		}
		return nil
	}
	if *burst > 0 {
		if s == "" {
			return &usageError{"bench: --secret (or --secret-file) is required"}
		}
		r, err := radbench.Burst(ctx, c.Addr, []byte(s), *burst, *burstWait)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		fmt.Fprint(stdout, r.String())
		return nil
	}
	if s == "" || c.CertFile == "" || c.KeyFile == "" {
		return &usageError{"bench: --secret (or --secret-file), --cert and --key are required"}
	}
	c.Secret = s
	if c.Groups, err = radbench.ParseGroups(*groups); err != nil {
		return &usageError{"bench: --groups: " + err.Error()}
	}
	// Run prints progress and the summary on stdout.
	if _, err := radbench.Run(ctx, c, stdout); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}
