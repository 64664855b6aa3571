package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// adInChain is LDAP_MATCHING_RULE_IN_CHAIN: Active Directory evaluates
// (member:1.2.840.113556.1.4.1941:=DN) transitively.
const adInChain = "1.2.840.113556.1.4.1941"

// groupBatch is how many group DNs one nested-group query asks about.
const groupBatch = 32

// ldapBackend answers lookups from an LDAP server through a pool.
type ldapBackend struct {
	// searchFn runs one search; it is b.search except in unit tests.
	searchFn func(ctx context.Context, req *ldap.SearchRequest, paged bool) ([]*ldap.Entry, error)
	s        *settings
	logger   *slog.Logger
	pool     *pool
	queries  *atomic.Uint64
}

func newLDAPBackend(s *settings, logger *slog.Logger, queries *atomic.Uint64) (*ldapBackend, error) {
	p, err := newPool(s, logger)
	if err != nil {
		return nil, err
	}
	b := &ldapBackend{s: s, logger: logger, pool: p, queries: queries}
	b.searchFn = b.search
	return b, nil
}

func (b *ldapBackend) run(ctx context.Context) error { return b.pool.run(ctx) }
func (b *ldapBackend) close()                        { b.pool.close() }
func (b *ldapBackend) reload() error                 { return nil }

// search runs one search (paged when pageSize > 0) and returns its entries.
func (b *ldapBackend) search(ctx context.Context, req *ldap.SearchRequest, paged bool) ([]*ldap.Entry, error) {
	v, err := b.pool.do(ctx, func(c *ldap.Conn) (any, error) {
		var entries []*ldap.Entry
		var paging *ldap.ControlPaging
		r := *req
		if paged {
			paging = ldap.NewControlPaging(uint32(b.s.pageSize))
			r.Controls = append(r.Controls[:len(r.Controls):len(r.Controls)], paging)
		}
		for {
			b.queries.Add(1)
			res, err := c.Search(&r)
			if res != nil {
				entries = append(entries, res.Entries...)
			}
			if err != nil {
				return entries, err
			}
			if paging == nil {
				return entries, nil
			}
			ctl, ok := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
			if !ok || len(ctl.Cookie) == 0 {
				return entries, nil
			}
			paging.SetCookie(ctl.Cookie)
		}
	})
	entries, _ := v.([]*ldap.Entry)
	return entries, err
}

func (b *ldapBackend) lookup(ctx context.Context, kind, filter string) (string, []string, error) {
	var attrs []string
	switch b.s.groupMode {
	case "memberof":
		attrs = []string{"memberOf"}
	case "memberuid":
		attrs = []string{"uid"}
	default:
		attrs = []string{"1.1"} // no attributes
	}
	req := ldap.NewSearchRequest(b.s.baseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, timeLimit(ctx), false, filter, attrs, nil)
	entries, err := b.searchFn(ctx, req, false)
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) && len(entries) > 1:
		return "", nil, ambiguous(len(entries))
	case err != nil:
		return "", nil, b.wrap("search", err)
	case len(entries) == 0:
		return "", nil, nil
	case len(entries) > 1:
		return "", nil, ambiguous(len(entries))
	}
	e := entries[0]
	groups, err := b.groups(ctx, e)
	if err != nil {
		return "", nil, b.wrap("groups", err)
	}
	return e.DN, groups, nil
}

// wrap keeps outages as they are and names the step of other errors.
func (b *ldapBackend) wrap(step string, err error) error {
	var u *UnavailableError
	if errors.As(err, &u) {
		return err
	}
	return fmt.Errorf("directory: %s: %w", step, err)
}

func timeLimit(ctx context.Context) int {
	if d, ok := ctx.Deadline(); ok {
		if s := int(time.Until(d).Seconds()); s > 0 {
			return s
		}
	}
	return 0
}

// groups finds the groups of e according to the group mode.
func (b *ldapBackend) groups(ctx context.Context, e *ldap.Entry) ([]string, error) {
	var gs groupSet
	self := canonOrRaw(e.DN)
	gs.seen = map[string]bool{self: true}
	var direct []string
	switch b.s.groupMode {
	case "memberof":
		direct = gs.add(e.GetEqualFoldAttributeValues("memberOf"))
	case "member", "uniquemember":
		dns, err := b.groupsHolding(ctx, b.s.groupMode, []string{e.DN})
		if err != nil {
			return nil, err
		}
		direct = gs.add(dns)
	case "memberuid":
		uids := e.GetEqualFoldAttributeValues("uid")
		if len(uids) == 0 {
			return nil, nil
		}
		var f strings.Builder
		f.WriteString("(&(objectClass=posixGroup)(|")
		for _, u := range uids {
			f.WriteString("(memberUid=" + ldap.EscapeFilter(u) + ")")
		}
		f.WriteString("))")
		dns, err := b.groupSearch(ctx, f.String())
		if err != nil {
			return nil, err
		}
		gs.add(dns)
		return gs.out, nil // posix groups do not nest
	case "ad_transitive":
		dns, err := b.groupSearch(ctx, "(member:"+adInChain+":="+ldap.EscapeFilter(e.DN)+")")
		if err != nil {
			return nil, err
		}
		gs.add(dns)
		return gs.out, nil // the server resolved nesting
	}
	attr := "member"
	if b.s.groupMode == "uniquemember" {
		attr = "uniquemember"
	}
	level := direct
	for depth := 0; depth < b.s.nestedDepth && len(level) > 0; depth++ {
		var next []string
		for i := 0; i < len(level); i += groupBatch {
			dns, err := b.groupsHolding(ctx, attr, level[i:min(i+groupBatch, len(level))])
			if err != nil {
				return nil, err
			}
			next = append(next, gs.add(dns)...)
		}
		level = next
	}
	return gs.out, nil
}

// groupsHolding returns the DNs of groups whose attr holds any of dns, in
// one (paged) query.
func (b *ldapBackend) groupsHolding(ctx context.Context, attr string, dns []string) ([]string, error) {
	if attr == "uniquemember" {
		attr = "uniqueMember"
	}
	var f strings.Builder
	if len(dns) > 1 {
		f.WriteString("(|")
	}
	for _, dn := range dns {
		f.WriteString("(" + attr + "=" + ldap.EscapeFilter(dn) + ")")
	}
	if len(dns) > 1 {
		f.WriteString(")")
	}
	return b.groupSearch(ctx, f.String())
}

func (b *ldapBackend) groupSearch(ctx context.Context, filter string) ([]string, error) {
	req := ldap.NewSearchRequest(b.s.baseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, timeLimit(ctx), false, filter, []string{"1.1"}, nil)
	entries, err := b.searchFn(ctx, req, true)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.DN
	}
	return out, nil
}

// groupSet collects group DNs once each, by canonical form, keeping the
// server's spelling.
type groupSet struct {
	seen map[string]bool
	out  []string
}

// add adds dns and returns those that were new.
func (g *groupSet) add(dns []string) []string {
	var fresh []string
	for _, dn := range dns {
		c := canonOrRaw(dn)
		if g.seen[c] {
			continue
		}
		g.seen[c] = true
		g.out = append(g.out, dn)
		fresh = append(fresh, dn)
	}
	return fresh
}

// check dials every URL, binds and reads the base DN.
func (b *ldapBackend) check(ctx context.Context) error {
	var errs []error
	for i, u := range b.pool.urls {
		cctx, cancel := context.WithTimeout(ctx, b.s.timeout)
		c, err := b.pool.dial(cctx, i)
		if err == nil {
			_, err = c.Search(ldap.NewSearchRequest(b.s.baseDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
				1, 0, false, "(objectClass=*)", []string{"1.1"}, nil))
			c.Close()
			if err != nil {
				err = fmt.Errorf("%s: base_dn %q: %w", u.Redacted(), b.s.baseDN, readable(err))
			}
		}
		cancel()
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("directory: check: %w", joinErrors(errs))
	}
	return nil
}
