package directory

import (
	"strconv"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// memEntry is an entry held in memory by the file backend.
type memEntry struct {
	dn    string              // as written in the file
	canon string              // canonDN(dn)
	attrs map[string][]string // lower-case attribute type, options stripped → values
}

// dnSyntax lists attributes whose values are DNs: equality on them compares
// parsed DNs.
var dnSyntax = map[string]bool{
	"member": true, "uniquemember": true, "memberof": true, "owner": true,
	"manager": true, "seealso": true, "distinguishedname": true, "entrydn": true,
}

func newMemEntry(e ldifEntry) (*memEntry, error) {
	c, err := canonDN(e.DN)
	if err != nil {
		return nil, err
	}
	m := &memEntry{dn: e.DN, canon: c, attrs: make(map[string][]string, len(e.Attrs))}
	for _, a := range e.Attrs {
		name, _, _ := strings.Cut(a.Name, ";")
		name = strings.ToLower(name)
		m.attrs[name] = append(m.attrs[name], a.Value)
	}
	return m, nil
}

// values returns the values of attr (lower-case), with the virtual
// attributes entryDN and distinguishedName.
func (m *memEntry) values(attr string) []string {
	switch attr {
	case "entrydn", "distinguishedname":
		return []string{m.dn}
	}
	return m.attrs[attr]
}

func pstr(p *ber.Packet) string {
	if s, ok := p.Value.(string); ok {
		return s
	}
	return p.Data.String()
}

// match evaluates a compiled filter (ldap.CompileFilter) against m. Matching
// is case-insensitive, DN-valued attributes compare as parsed DNs. An
// extensible match or anything unknown is false (fail closed).
func (m *memEntry) match(f *ber.Packet) bool {
	switch f.Tag {
	case ldap.FilterAnd:
		for _, c := range f.Children {
			if !m.match(c) {
				return false
			}
		}
		return true
	case ldap.FilterOr:
		for _, c := range f.Children {
			if m.match(c) {
				return true
			}
		}
		return false
	case ldap.FilterNot:
		return len(f.Children) == 1 && !m.match(f.Children[0])
	case ldap.FilterPresent:
		return len(m.values(strings.ToLower(pstr(f)))) > 0
	case ldap.FilterEqualityMatch, ldap.FilterApproxMatch, ldap.FilterGreaterOrEqual, ldap.FilterLessOrEqual:
		if len(f.Children) != 2 {
			return false
		}
		attr := strings.ToLower(pstr(f.Children[0]))
		want := pstr(f.Children[1])
		for _, v := range m.values(attr) {
			if compare(f.Tag, attr, v, want) {
				return true
			}
		}
		return false
	case ldap.FilterSubstrings:
		if len(f.Children) != 2 {
			return false
		}
		attr := strings.ToLower(pstr(f.Children[0]))
		for _, v := range m.values(attr) {
			if substrings(strings.ToLower(v), f.Children[1].Children) {
				return true
			}
		}
		return false
	}
	return false
}

func compare(tag ber.Tag, attr, have, want string) bool {
	switch tag {
	case ldap.FilterEqualityMatch, ldap.FilterApproxMatch:
		if dnSyntax[attr] {
			a, err1 := canonDN(have)
			b, err2 := canonDN(want)
			return err1 == nil && err2 == nil && a == b
		}
		return strings.EqualFold(have, want)
	}
	var c int
	hi, err1 := strconv.ParseInt(have, 10, 64)
	wi, err2 := strconv.ParseInt(want, 10, 64)
	if err1 == nil && err2 == nil {
		c = cmpInt(hi, wi)
	} else {
		c = strings.Compare(strings.ToLower(have), strings.ToLower(want))
	}
	if tag == ldap.FilterGreaterOrEqual {
		return c >= 0
	}
	return c <= 0
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// substrings matches v (lower-cased) against initial/any/final parts.
func substrings(v string, parts []*ber.Packet) bool {
	for i, p := range parts {
		s := strings.ToLower(pstr(p))
		switch p.Tag {
		case ldap.FilterSubstringsInitial:
			if i != 0 || !strings.HasPrefix(v, s) {
				return false
			}
			v = v[len(s):]
		case ldap.FilterSubstringsAny:
			j := strings.Index(v, s)
			if j < 0 {
				return false
			}
			v = v[j+len(s):]
		case ldap.FilterSubstringsFinal:
			if i != len(parts)-1 || !strings.HasSuffix(v, s) {
				return false
			}
			v = ""
		default:
			return false
		}
	}
	return true
}
