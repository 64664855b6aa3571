package directory

import (
	"sort"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// canonDN returns a canonical form of a DN: attribute types and values
// case-folded, values re-escaped uniformly, multi-valued RDNs sorted. Two DNs
// that distinguishedNameMatch (case-insensitively) have the same canonical
// form, so `cn=R&D\2C Lab` and `CN=R&D\, Lab` compare equal.
func canonDN(dn string) (string, error) {
	d, err := ldap.ParseDN(dn)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for i, rdn := range d.RDNs {
		if i > 0 {
			b.WriteByte(',')
		}
		avas := make([]string, len(rdn.Attributes))
		for j, a := range rdn.Attributes {
			avas[j] = strings.ToLower(a.Type) + "=" + ldap.EscapeDN(strings.ToLower(a.Value))
		}
		sort.Strings(avas)
		b.WriteString(strings.Join(avas, "+"))
	}
	return b.String(), nil
}

// canonOrRaw is canonDN, falling back to the lower-cased string for a DN that
// does not parse (so a malformed value from a server is still deduplicated).
func canonOrRaw(dn string) string {
	c, err := canonDN(dn)
	if err != nil {
		return strings.ToLower(dn)
	}
	return c
}

// underBase reports whether canonical DN c is base or below it.
func underBase(c, base string) bool {
	if base == "" || c == base {
		return true
	}
	return strings.HasSuffix(c, ","+base)
}
