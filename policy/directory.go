package policy

import "context"

// Directory finds the one entry for an identity and the groups it belongs to.
// Implementations live in package directory (LDAP and LDIF file); they use
// only standard-library types so that package need not import this one.
//
// kind is "user" or "device". fields holds the identity's lookup values under
// the keys "id" (the value chosen by the identity rules), "upn", "email", "cn",
// "dns", "serial" and "fingerprint"; an absent field has no key.
//
// Lookup returns the entry's DN and the DNs of all its groups, nested ones
// included. No entry is ("", nil, nil). An error means the directory could not
// give one clear answer: more than one entry (ambiguous), or the directory is
// unreachable. An error that has a method Unavailable() bool returning true is
// an outage.
type Directory interface {
	Lookup(ctx context.Context, kind string, fields map[string]string) (dn string, groups []string, err error)
}
