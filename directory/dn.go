package directory

import (
	"strings"

	"github.com/gatehouse/gatehouse/policy/dn"
)

// canonDN returns the canonical form of a DN (package policy/dn, the one DN
// parser of gatehouse): attribute types and values case-folded, escapes
// resolved, values re-escaped uniformly, multi-valued RDNs sorted, "+" kept
// apart from ",". Two DNs that distinguishedNameMatch (case-insensitively)
// have the same canonical form, so `cn=R&D\2C Lab` and `CN=R&D\, Lab`
// compare equal, and `cn=a+ou=b` and `cn=a,ou=b` do not.
func canonDN(s string) (string, error) { return dn.Canonical(s) }

// canonOrRaw is canonDN, falling back to the lower-cased string for a DN that
// does not parse (so a malformed value from a server is still deduplicated).
func canonOrRaw(s string) string {
	c, err := canonDN(s)
	if err != nil {
		return strings.ToLower(s)
	}
	return c
}

// underBase reports whether canonical DN c is base or below it.
func underBase(c, base string) bool { return dn.IsUnderCanonical(c, base) }
