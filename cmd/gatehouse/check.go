package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

func cmdCheck(ctx context.Context, args []string, stdout io.Writer) (int, error) {
	fs := newFlags("check", stdout)
	cfgFile := configFlag(fs)
	testDir := fs.Bool("directory", false, "also connect and bind to the directory, resolve every group a rule names and look up a sample entry")
	sample := fs.String("sample", "", "with --directory: the `name` looked up to see whether the group mode returns groups (default: a member of the first group a rule names)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object (schema: docs/cli.md)")
	if err := parseFlags(fs, args); err != nil {
		return exitUsage, err
	}
	rep := checkReport{File: *cfgFile, Errors: []checkIssue{}, Warnings: []checkIssue{}}
	l, srv, errs := checkConfig(*cfgFile)
	if len(errs) > 0 {
		for _, e := range errs {
			rep.Errors = append(rep.Errors, parseIssue(*cfgFile, e))
		}
		if *asJSON {
			return exitUsage, writeJSON(stdout, rep, &silentError{exitUsage})
		}
		return exitUsage, &configError{strings.Join(errs, "\n")}
	}
	srv.dir.Close()
	rep.OK = true
	rep.Summary = checkSummaryOf(l)
	for _, w := range checkCRLWarnings(l.policy.CRLFiles(), time.Now()) {
		rep.Warnings = append(rep.Warnings, checkIssue{Message: w, Text: w})
	}
	if w := vpnKeyWarning(l); w != "" {
		rep.Warnings = append(rep.Warnings, checkIssue{Message: w, Text: w})
	}
	if *testDir {
		rep.Directory = &checkDirectory{Warnings: []string{}}
		err := checkDirectoryGroups(ctx, l, *sample, rep.Directory)
		if err != nil {
			rep.OK = false
			rep.Directory.Error = err.Error()
			if *asJSON {
				return exitFailure, writeJSON(stdout, rep, &silentError{exitFailure})
			}
			writeCheckText(stdout, l, &rep, false)
			return exitFailure, err // "directory: check: <url>: ..." already
		}
		rep.Directory.Reachable = true
	}
	if *asJSON {
		return exitOK, writeJSON(stdout, rep, nil)
	}
	writeCheckText(stdout, l, &rep, true)
	return exitOK, nil
}

// checkConfig loads a config file and builds (without starting) every
// server, collecting every error of every section: a section that does
// not decode hides only the errors found under it.
func checkConfig(file string) (*loaded, *servers, []string) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, []string{fmt.Sprintf("%s: %v", file, err)}
	}
	var errs, failed []string
	l, err := decodeConfig(file, b)
	if err != nil {
		var de *decodeError
		if !errors.As(err, &de) {
			return nil, nil, strings.Split(err.Error(), "\n")
		}
		errs, failed = strings.Split(de.msg, "\n"), de.failed
	}
	if err := l.compile(); err != nil {
		errs = append(errs, dropUnder(file, strings.Split(err.Error(), "\n"), failed)...)
	}
	srv, err := buildServers(l, slog.New(slog.DiscardHandler))
	if err != nil {
		errs = append(errs, dropUnder(file, strings.Split(err.Error(), "\n"), failed)...)
	} else if err := checkVPNKey(l, srv); err != nil {
		// What serve would refuse at start (vpnkey.go).
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		if srv != nil {
			srv.dir.Close()
		}
		// In file order; errors without a line last.
		sort.SliceStable(errs, func(i, j int) bool {
			a, b := parseIssue(file, errs[i]).Line, parseIssue(file, errs[j]).Line
			return a != 0 && (b == 0 || a < b)
		})
		return nil, nil, errs
	}
	return l, srv, nil
}

// dropUnder drops the errors about keys under a key that did not decode:
// what was decoded of it is not what the file says.
func dropUnder(file string, errs, failed []string) []string {
	if len(failed) == 0 {
		return errs
	}
	var out []string
	for _, e := range errs {
		is := parseIssue(file, e)
		key := is.Key
		if key == "" {
			key, _, _ = strings.Cut(is.Message, ":")
		}
		if !underAny(key, failed, false) {
			out = append(out, e)
		}
	}
	return out
}

// checkReport is the result of `gatehouse check`; with --json it is
// printed as is. The schema is documented in docs/cli.md: fields are only
// ever added.
type checkReport struct {
	File      string          `json:"file"`
	OK        bool            `json:"ok"`
	Errors    []checkIssue    `json:"errors"`
	Warnings  []checkIssue    `json:"warnings"`
	Summary   *checkSummary   `json:"summary,omitempty"`
	Directory *checkDirectory `json:"directory,omitempty"`
}

// checkIssue is one error or warning.
type checkIssue struct {
	Line    int    `json:"line,omitempty"` // 0: the file gives none
	Key     string `json:"key,omitempty"`  // e.g. "policy[2].vpn.allow[1]"
	Message string `json:"message"`        // the problem, without file and line
	Text    string `json:"text"`           // the whole line as printed without --json
}

type checkSummary struct {
	ClientCAs      []string `json:"client_cas"`
	Intermediates  []string `json:"intermediates"`
	MinRSABits     int      `json:"min_rsa_bits"`
	Revocation     string   `json:"revocation"`
	CRLs           int      `json:"crls"`
	CRLURLs        int      `json:"crl_urls"`
	OCSP           string   `json:"ocsp"`
	OCSPResponders int      `json:"ocsp_responders"`
	ServerCert     string   `json:"server_cert"`
	DenyAll        bool     `json:"deny_all"`
	Rules          []string `json:"rules"`
	Directory      struct {
		Backend string   `json:"backend"`
		File    string   `json:"file,omitempty"`
		URLs    []string `json:"urls,omitempty"`
	} `json:"directory"`
	Radius struct {
		Listen           string `json:"listen"`
		AccountingListen string `json:"accounting_listen"`
		Clients          int    `json:"clients"`
		DynAuthClients   int    `json:"dynauth_clients"`
		RevalidateEvery  string `json:"revalidate_every"`
	} `json:"radius"`
	VPN struct {
		Enabled      bool   `json:"enabled"`
		Interface    string `json:"interface,omitempty"`
		ListenPort   int    `json:"listen_port,omitempty"`
		AddressPool  string `json:"address_pool,omitempty"`
		EnrollListen string `json:"enroll_listen,omitempty"`
	} `json:"vpn"`
	Metrics string `json:"metrics"` // "off" or the address
	Audit   string `json:"audit"`   // a file, "stdout" or "off"
	Cores   string `json:"cores"`   // server.cores: "adaptive" or "all"
	// Capabilities lists the Linux capabilities serve needs, or "none".
	Capabilities []string `json:"capabilities"`
}

// checkDirectory is the result of --directory.
type checkDirectory struct {
	Reachable bool     `json:"reachable"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings"`
	// Groups lists each group a rule names and whether it resolved.
	Groups []checkGroup `json:"groups,omitempty"`
	// Sample is the entry looked up to try the group mode, and its groups.
	Sample *checkSample `json:"sample,omitempty"`
}

type checkGroup struct {
	Rule  string `json:"rule"`
	Group string `json:"group"`
	Found bool   `json:"found"`
}

type checkSample struct {
	Name   string   `json:"name"`
	DN     string   `json:"dn"`
	Groups []string `json:"groups"`
}

var issueRE = regexp.MustCompile(`^:(\d+): (.*)$`)

// parseIssue splits a printed error line of file into its parts.
func parseIssue(file, text string) checkIssue {
	is := checkIssue{Text: text, Message: text}
	if rest, ok := strings.CutPrefix(text, file); ok {
		if m := issueRE.FindStringSubmatch(rest); m != nil {
			is.Line, _ = strconv.Atoi(m[1])
			is.Message = m[2]
		} else {
			is.Message = strings.TrimPrefix(rest, ": ")
		}
	}
	if m := errKeyRE.FindStringSubmatch(is.Message); m != nil && (knownKey(m[1]) || strings.HasSuffix(is.Message, ": unknown key")) {
		is.Key = m[1]
	}
	return is
}

func checkSummaryOf(l *loaded) *checkSummary {
	s := l.policy.Summary()
	c := &l.cfg
	out := &checkSummary{
		ClientCAs: nonNil(s.ClientCAs), Intermediates: nonNil(s.Intermediates), MinRSABits: s.MinRSABits,
		Revocation: s.Revocation, CRLs: s.CRLs, CRLURLs: s.CRLURLs, OCSP: s.OCSP, OCSPResponders: s.OCSPResponders,
		ServerCert: s.ServerCert, DenyAll: c.DenyAll, Rules: nonNil(s.Rules),
	}
	if c.DenyAll {
		out.Rules = []string{}
	}
	out.Directory.Backend = c.Directory.Backend
	if c.Directory.Backend == "file" {
		out.Directory.File = c.Directory.File
	} else {
		out.Directory.URLs = c.Directory.LDAP.URLs
	}
	r := &out.Radius
	r.Listen, r.AccountingListen, r.Clients = c.Radius.Listen, c.Radius.AccountingListen, len(c.Radius.Clients)
	for _, cl := range c.Radius.Clients {
		if cl.CoAPort == nil || *cl.CoAPort > 0 {
			r.DynAuthClients++
		}
	}
	r.RevalidateEvery = "60s"
	if d := c.Radius.RevalidateEvery.Duration; d != 0 {
		r.RevalidateEvery = d.String()
	}
	if c.VPN.Enabled {
		v := &out.VPN
		v.Enabled, v.Interface, v.ListenPort, v.AddressPool, v.EnrollListen = true, c.VPN.Interface, c.VPN.ListenPort, c.VPN.AddressPool, c.VPN.EnrollListen
	}
	sc := &c.Server
	out.Metrics = sc.MetricsListen
	if out.Metrics == "" {
		out.Metrics = "off"
	}
	out.Audit = sc.Audit
	if out.Audit == "" || out.Audit == "file" {
		out.Audit = filepath.Join(sc.StateDir, "audit.jsonl")
	}
	out.Cores = sc.Cores
	if out.Cores == "" {
		out.Cores = "adaptive"
	}
	out.Capabilities = capabilities(c)
	if len(out.Capabilities) == 0 {
		out.Capabilities = []string{"none"}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// writeCheckText prints the report for people.
func writeCheckText(w io.Writer, l *loaded, rep *checkReport, dirOK bool) {
	s := rep.Summary
	fmt.Fprintf(w, "%s: OK\n", l.file)
	fmt.Fprintf(w, "client CAs:    %s\n", strings.Join(s.ClientCAs, "; "))
	if len(s.Intermediates) > 0 {
		fmt.Fprintf(w, "intermediates: %s\n", strings.Join(s.Intermediates, "; "))
	}
	fmt.Fprintf(w, "client keys:   RSA ≥ %d bits, ECDSA P-256/P-384/P-521, Ed25519 (leaf and CAs)\n", s.MinRSABits)
	fmt.Fprintf(w, "revocation:    %s, %d CRLs\n", s.Revocation, s.CRLs)
	if s.CRLURLs > 0 || s.OCSP != "off" {
		fmt.Fprintf(w, "               %d CRL URLs, OCSP %s with %d responders\n", s.CRLURLs, s.OCSP, s.OCSPResponders)
	}
	for _, w2 := range rep.Warnings {
		fmt.Fprintln(w, w2.Text)
	}
	if s.ServerCert != "" {
		fmt.Fprintf(w, "server cert:   %s\n", s.ServerCert)
	}
	if s.DenyAll {
		fmt.Fprintln(w, "rules:         none: deny_all = true, everyone is denied")
	} else {
		fmt.Fprintf(w, "rules:         %s\n", strings.Join(s.Rules, ", "))
	}
	for _, line := range l.cfg.sections.summary() {
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "metrics:       %s\naudit:         %s\n", s.Metrics, s.Audit)
	if n := runtime.GOMAXPROCS(0); s.Cores == "adaptive" && n > 1 {
		fmt.Fprintf(w, "cores:         adaptive: 1 while the load fits in one core, %d under load\n", n)
	} else {
		fmt.Fprintf(w, "cores:         %d\n", n)
	}
	fmt.Fprintf(w, "capabilities:  %s\n", strings.Join(s.Capabilities, "; "))
	if d := rep.Directory; d != nil {
		for _, g := range d.Groups {
			if g.Found {
				fmt.Fprintf(w, "group:         %s (rule %s): found\n", g.Group, g.Rule)
			}
		}
		if d.Sample != nil {
			fmt.Fprintf(w, "sample:        %s: %d groups (group_mode %s)\n", d.Sample.DN, len(d.Sample.Groups), orDefault(l.cfg.Directory.GroupMode, "member"))
		}
		for _, warn := range d.Warnings {
			fmt.Fprintf(w, "warning: %s\n", warn)
		}
		if dirOK {
			fmt.Fprintln(w, "directory:     reachable, bind OK")
		}
	}
}

// writeJSON prints v as indented JSON and returns ret.
func writeJSON(w io.Writer, v any, ret error) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return err
	}
	if ret == nil {
		return nil
	}
	return ret
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
