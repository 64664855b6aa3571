package policy

import (
	"errors"

	"github.com/gatehouse/gatehouse/policy/dn"
)

// dnKey is a distinguished name in the canonical form of package dn: two
// spellings of the same DN are equal strings ("CN=R&D\, Lab" and
// "cn=R&D\2C Lab"), two different DNs never are ("cn=a+ou=b" is one RDN,
// "cn=a,ou=b" two).
type dnKey string

// parseDN parses an RFC 4514 distinguished name into its key and the value
// of its first (most specific) RDN as written (e.g. "engineering"), which is
// "" when that RDN is multi-valued: such a group can be named by DN only.
func parseDN(s string) (key dnKey, first string, err error) {
	d, err := dn.Parse(s)
	if err != nil {
		return "", "", err
	}
	if len(d.RDNs) == 0 {
		return "", "", errors.New("empty DN")
	}
	return dnKey(d.String()), d.First, nil
}
