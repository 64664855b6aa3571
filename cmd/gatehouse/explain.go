package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

func cmdExplain(ctx context.Context, args []string, stdout io.Writer) (int, error) {
	fs := newFlags("explain", stdout)
	cfgFile := configFlag(fs)
	certFile := fs.String("cert", "", "client certificate `file` (PEM; may hold the chain too)")
	chainFile := fs.String("chain", "", "extra intermediate certificates `file` (PEM) the client would send")
	noCache := fs.Bool("no-cache", false, "bypass the directory cache")
	refresh := fs.Bool("refresh", true, "fetch configured CRL URLs now instead of using only the copies on disk")
	at := fs.String("at", "", "decide at this `time` (RFC 3339) instead of now")
	asJSON := fs.Bool("json", false, "print the decision as one JSON object (schema: docs/cli.md)")
	if err := parseFlags(fs, args); err != nil {
		return exitUsage, err
	}
	if *certFile == "" {
		return exitUsage, &usageError{"explain: --cert is required"}
	}
	now := time.Now()
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return exitUsage, &usageError{fmt.Sprintf("explain: --at: %v", err)}
		}
		now = t
	}
	l, err := loadConfig(*cfgFile)
	if err != nil {
		return exitUsage, err
	}
	chain, err := readChain(*certFile)
	if err != nil {
		return exitUsage, fmt.Errorf("explain: --cert: %w", err)
	}
	if *chainFile != "" {
		more, err := readChain(*chainFile)
		if err != nil {
			return exitUsage, fmt.Errorf("explain: --chain: %w", err)
		}
		chain = append(chain, more...)
	}
	logger := slog.New(slog.DiscardHandler)
	dir, err := openDirectory(ctx, l, logger, *noCache)
	if err != nil {
		return exitFailure, err
	}
	defer dir.close()
	a := policy.NewAuthorizer(l.policy, dir, logger)
	rev, err := newRevocation(l, logger)
	if err != nil {
		return exitUsage, err
	}
	var warnings []string
	if *refresh {
		if err := rev.Refresh(ctx); err != nil {
			warnings = append(warnings, fmt.Sprintf("revocation refresh: %v (using the copies on disk)", err))
		}
	}
	d := l.policy.VerifyContext(ctx, chain, now, rev)
	d = a.Decide(ctx, l.policy, d)
	code := exitDenied
	if d.Allowed {
		code = exitOK
	}
	if *asJSON {
		j := explainJSONOf(chain[0], d)
		j.Warnings = nonNil(warnings)
		return code, writeJSON(stdout, j, nil)
	}
	for _, w := range warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	writeExplain(stdout, chain[0], d)
	return code, nil
}

// readChain reads a PEM file of certificates, leaf first.
func readChain(file string) ([]*x509.Certificate, error) {
	certs, err := policy.ReadCertificates(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return certs, nil
}

// writeExplain prints each step of a decision, for people.
func writeExplain(w io.Writer, leaf *x509.Certificate, d policy.Decision) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	row("certificate", "%s", leaf.Subject)
	row("  issuer", "%s", leaf.Issuer)
	row("  serial", "%s", leaf.SerialNumber.Text(16))
	row("  valid", "%s to %s", leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	trustFailed := d.Chain == nil
	if trustFailed {
		row("chain", "FAILED: %s", d.Reason)
	} else {
		var names []string
		for _, c := range d.Chain {
			names = append(names, c.Subject.CommonName)
		}
		row("chain", "trusted: %s", strings.Join(names, " → "))
	}
	for _, r := range d.Revocation {
		src := r.Source
		if src == "" {
			src = "no source"
		}
		detail := ""
		if r.Detail != "" {
			detail = ": " + r.Detail
		}
		row("revocation", "%s: %s (%s)%s", r.Subject, r.Status, src, detail)
	}
	if !trustFailed && !d.Code.TrustStep() && d.Identity.Fingerprint != "" {
		id := d.Identity
		how := "lookup by " + id.Field + " " + fmt.Sprintf("%q", id.Name)
		if id.Name == "" {
			how = "no lookup field present"
		}
		if id.DeviceRule != "" {
			how += " (device rule " + id.DeviceRule + ")"
		}
		row("identity", "%s; %s", id.Kind, how)
		for _, f := range []struct {
			k string
			v []string
		}{{"upn", id.UPN}, {"email", id.Email}, {"cn", nonEmpty(id.CN)}, {"dns", id.DNS}, {"serial", nonEmpty(id.Serial)}, {"ou", id.OU}, {"fingerprint", nonEmpty(id.Fingerprint)}} {
			if len(f.v) > 0 {
				row("  "+f.k, "%s", strings.Join(f.v, ", "))
			}
		}
	}
	if d.DN != "" {
		row("directory", "%s", d.DN)
		if len(d.Groups) == 0 {
			row("groups", "(none)")
		}
		for i, g := range d.Groups {
			k := ""
			if i == 0 {
				k = "groups"
			}
			row(k, "%s", g)
		}
	}
	if d.Rule != "" {
		row("rule", "%s", d.Rule)
	}
	verdict := "DENY"
	if d.Allowed {
		verdict = "ALLOW"
	}
	row("decision", "%s (%s): %s", verdict, d.Code, d.Reason)
	if d.Allowed {
		row("wifi", "%s", wifiString(d.WiFi))
		row("vpn", "%s", vpnString(d.VPN))
	}
	tw.Flush()
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func wifiString(w policy.WiFi) string {
	if !w.Permitted {
		return "not permitted"
	}
	var parts []string
	if w.VLAN != "" {
		parts = append(parts, "vlan "+w.VLAN)
	}
	if w.SessionTimeout > 0 {
		parts = append(parts, "session-timeout "+w.SessionTimeout.String())
	}
	if w.FilterID != "" {
		parts = append(parts, "filter-id "+w.FilterID)
	}
	if w.Class != "" {
		parts = append(parts, "class "+w.Class)
	}
	if len(parts) == 0 {
		return "admitted, no attributes"
	}
	return strings.Join(parts, ", ")
}

func vpnString(v *policy.VPNAccess) string {
	if v == nil {
		return "not permitted"
	}
	var parts []string
	for _, d := range v.Allow {
		parts = append(parts, destString(d))
	}
	s := "allow " + strings.Join(parts, "; ")
	if len(parts) == 0 {
		s = "allow nothing"
	}
	if v.FullTunnel {
		s += "; full tunnel"
	}
	if len(v.DNS) > 0 {
		s += fmt.Sprintf("; dns %v", v.DNS)
	}
	return s
}

func destString(d policy.Destination) string {
	s := d.Prefix.String()
	switch d.Proto {
	case policy.ProtoAny:
		return s
	case policy.ProtoTCP:
		s += " tcp"
	case policy.ProtoUDP:
		s += " udp"
	case policy.ProtoICMP:
		return s + " icmp"
	}
	var ports []string
	for _, r := range d.Ports {
		if r.First == r.Last {
			ports = append(ports, fmt.Sprint(r.First))
		} else {
			ports = append(ports, fmt.Sprintf("%d-%d", r.First, r.Last))
		}
	}
	if len(ports) > 0 {
		s += "/" + strings.Join(ports, ",")
	}
	return s
}
