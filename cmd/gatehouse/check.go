package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"
)

func cmdCheck(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("check", stdout)
	cfgFile := configFlag(fs)
	testDir := fs.Bool("directory", false, "also connect and bind to the directory")
	l, err := parseAndLoad(fs, args, cfgFile)
	if err != nil {
		return err
	}
	// Building every server validates their sections; nothing starts.
	srv, err := buildServers(l, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	srv.dir.Close()
	s := l.policy.Summary()
	fmt.Fprintf(stdout, "%s: OK\n", l.file)
	fmt.Fprintf(stdout, "client CAs:    %s\n", strings.Join(s.ClientCAs, "; "))
	if len(s.Intermediates) > 0 {
		fmt.Fprintf(stdout, "intermediates: %s\n", strings.Join(s.Intermediates, "; "))
	}
	fmt.Fprintf(stdout, "client keys:   RSA ≥ %d bits, ECDSA P-256/P-384/P-521, Ed25519 (leaf and CAs)\n", s.MinRSABits)
	fmt.Fprintf(stdout, "revocation:    %s, %d CRLs\n", s.Revocation, s.CRLs)
	if s.CRLURLs > 0 || s.OCSP != "off" {
		fmt.Fprintf(stdout, "               %d CRL URLs, OCSP %s with %d responders\n", s.CRLURLs, s.OCSP, s.OCSPResponders)
	}
	for _, w := range checkCRLWarnings(l.policy.CRLFiles(), time.Now()) {
		fmt.Fprintln(stdout, w)
	}
	if s.ServerCert != "" {
		fmt.Fprintf(stdout, "server cert:   %s\n", s.ServerCert)
	}
	if l.cfg.DenyAll {
		fmt.Fprintln(stdout, "rules:         none: deny_all = true, everyone is denied")
	} else {
		fmt.Fprintf(stdout, "rules:         %s\n", strings.Join(s.Rules, ", "))
	}
	for _, line := range l.cfg.sections.summary() {
		fmt.Fprintln(stdout, line)
	}
	sc := &l.cfg.Server
	metrics := sc.MetricsListen
	if metrics == "" {
		metrics = "off"
	}
	auditTo := sc.Audit
	if auditTo == "" || auditTo == "file" {
		auditTo = filepath.Join(sc.StateDir, "audit.jsonl")
	}
	fmt.Fprintf(stdout, "metrics:       %s\naudit:         %s\n", metrics, auditTo)
	caps := capabilities(&l.cfg)
	if len(caps) == 0 {
		caps = []string{"none"}
	}
	fmt.Fprintf(stdout, "capabilities:  %s\n", strings.Join(caps, "; "))
	if *testDir {
		dir, err := openDirectory(ctx, l, slog.New(slog.DiscardHandler), true)
		if err != nil {
			return err
		}
		defer dir.close()
		if err := dir.check(ctx); err != nil {
			return err // "directory: check: <url>: ..." already
		}
		fmt.Fprintln(stdout, "directory:     reachable, bind OK")
	}
	return nil
}
