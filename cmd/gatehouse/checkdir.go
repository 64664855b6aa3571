package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// checkDirectoryGroups is `check --directory`: it connects and binds to the
// directory, resolves every group a rule names (a name that matches no
// group grants nothing: a typo like "saels" is otherwise silent), and looks
// up a sample entry (--sample, else a member of the first group found) to
// see whether the group mode returns groups at all (ad_transitive against
// a server that is not Active Directory returns none). Findings are
// warnings in rep; an error means the directory could not be used.
func checkDirectoryGroups(ctx context.Context, l *loaded, sample string, rep *checkDirectory) error {
	dir, err := openDirectory(ctx, l, slog.New(slog.DiscardHandler), true)
	if err != nil {
		return err
	}
	defer dir.close()
	if err := dir.check(ctx); err != nil {
		return err
	}
	mode := l.cfg.Directory.GroupMode
	if mode == "" {
		mode = "member"
	}
	memberAttr := map[string]string{"uniquemember": "uniqueMember", "memberuid": "memberUid"}[mode]
	if memberAttr == "" {
		memberAttr = "member"
	}
	sampleFilter, sampleFrom := "", ""
	for i, r := range l.cfg.Policy {
		for j, g := range r.Groups {
			filter, want := groupFilter(g)
			entries, err := dir.d.Search(ctx, filter, memberAttr, 16)
			if err != nil {
				return fmt.Errorf("directory: resolving group %q: %w", g, err)
			}
			found := false
			for _, e := range entries {
				if !want(e.DN) {
					continue
				}
				found = true
				if sampleFilter == "" && len(e.Values) > 0 {
					sampleFilter, sampleFrom = memberFilter(e.Values[0], mode), e.DN
				}
			}
			rep.Groups = append(rep.Groups, checkGroup{Rule: r.Name, Group: g, Found: found})
			if !found {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("policy[%d].groups[%d]: %q (rule %s): no such group in the directory: the rule grants nothing through it (a typo?)", i, j, g, r.Name))
			}
		}
	}
	var dn string
	var groups []string
	switch {
	case sample != "":
		f := map[string]string{"id": sample, "upn": sample, "email": sample, "cn": sample}
		if dn, groups, err = dir.d.LookupNoCache(ctx, "user", f); err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("sample %q: %v", sample, err))
			return nil
		}
		if dn == "" {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("sample %q: no entry found with the user filter", sample))
			return nil
		}
		sampleFrom = ""
	case sampleFilter != "":
		dn, groups, err = dir.d.Probe(ctx, sampleFilter)
		switch {
		case err != nil && strings.Contains(err.Error(), "ambiguous"):
			return nil // proves nothing about the mode
		case err != nil:
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("directory.group_mode: %q: finding the groups of %s, a %s of %s, failed: %v", mode, sampleFilter, memberAttr, sampleFrom, err))
			return nil
		case dn == "":
			return nil
		}
		sample = dn
	default:
		return nil
	}
	rep.Sample = &checkSample{Name: sample, DN: dn, Groups: nonNil(groups)}
	if len(groups) == 0 {
		w := fmt.Sprintf("directory.group_mode: %q returned no groups for the sample %s", mode, dn)
		if sampleFrom != "" {
			w += ", a " + memberAttr + " of " + sampleFrom
		}
		rep.Warnings = append(rep.Warnings, w+": does the mode fit this server (ad_transitive needs Active Directory, memberof needs the memberOf overlay)?")
	}
	return nil
}

// groupFilter returns the filter that finds a group a rule names (by DN or
// by its first RDN's value) and the test its DN must pass.
func groupFilter(g string) (string, func(string) bool) {
	if d, err := ldap.ParseDN(g); err == nil && len(d.RDNs) > 0 && strings.Contains(g, "=") {
		a := d.RDNs[0].Attributes[0]
		return fmt.Sprintf("(%s=%s)", a.Type, ldap.EscapeFilter(a.Value)), func(dn string) bool {
			e, err := ldap.ParseDN(dn)
			return err == nil && e.EqualFold(d)
		}
	}
	v := ldap.EscapeFilter(g)
	return fmt.Sprintf("(|(cn=%s)(ou=%s))", v, v), func(dn string) bool {
		e, err := ldap.ParseDN(dn)
		return err == nil && len(e.RDNs) > 0 && strings.EqualFold(e.RDNs[0].Attributes[0].Value, g)
	}
}

// memberFilter returns the filter that finds a group member: by uid for
// memberuid, else by the first RDN of its DN.
func memberFilter(v, mode string) string {
	if mode == "memberuid" {
		return "(uid=" + ldap.EscapeFilter(v) + ")"
	}
	d, err := ldap.ParseDN(v)
	if err != nil || len(d.RDNs) == 0 {
		return ""
	}
	a := d.RDNs[0].Attributes[0]
	return fmt.Sprintf("(%s=%s)", a.Type, ldap.EscapeFilter(a.Value))
}
