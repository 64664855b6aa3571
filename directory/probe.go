package directory

import (
	"context"
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// Entry is an entry Search found: its DN and the values of the attribute
// asked for.
type Entry struct {
	DN     string
	Values []string
}

// Search returns up to limit entries under the base DN that filter (RFC
// 4515) matches, with the values of attr (none if attr is ""). It is for
// diagnostics (`gatehouse check --directory`): uncached, bounded by limit
// and by the lookup timeout.
func (d *Directory) Search(ctx context.Context, filter, attr string, limit int) ([]Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, d.s.timeout)
	defer cancel()
	switch b := d.be.(type) {
	case *fileBackend:
		f, err := ldap.CompileFilter(filter)
		if err != nil {
			return nil, fmt.Errorf("directory: search: filter: %w", err)
		}
		var out []Entry
		for _, m := range b.data.Load().entries {
			if len(out) >= limit {
				break
			}
			if m.match(f) {
				out = append(out, Entry{DN: m.dn, Values: m.attrs[strings.ToLower(attr)]})
			}
		}
		return out, nil
	case *ldapBackend:
		attrs := []string{"1.1"}
		if attr != "" {
			attrs = []string{attr}
		}
		req := ldap.NewSearchRequest(b.s.baseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
			limit, timeLimit(ctx), false, filter, attrs, nil)
		entries, err := b.searchFn(ctx, req, false)
		if err != nil && !(ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) && len(entries) > 0) {
			return nil, b.wrap("search", err)
		}
		var out []Entry
		for _, e := range entries {
			var vals []string
			if attr != "" {
				vals = e.GetAttributeValues(attr)
			}
			out = append(out, Entry{DN: e.DN, Values: vals})
		}
		return out, nil
	}
	return nil, fmt.Errorf("directory: search: not supported by this backend")
}

// Probe looks up the one entry filter matches and its groups, as Lookup
// does for an identity (same group mode, nesting and timeout) but
// uncached. Diagnostics only.
func (d *Directory) Probe(ctx context.Context, filter string) (string, []string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.s.timeout)
	defer cancel()
	return d.be.lookup(ctx, "user", filter)
}
