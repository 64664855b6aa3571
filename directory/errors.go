package directory

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// ErrAmbiguous is wrapped by the error of a lookup that found more than one
// entry.
var ErrAmbiguous = errors.New("directory: ambiguous: more than one entry matches")

// UnavailableError is returned when the directory cannot answer: the server
// is unreachable, too slow, or refuses the service account. Its Unavailable
// method tells policy that this is an outage.
type UnavailableError struct {
	Err error
}

func (e *UnavailableError) Error() string {
	if e.Err == nil {
		return "directory unavailable"
	}
	return "directory unavailable: " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *UnavailableError) Unwrap() error { return e.Err }

// Unavailable reports true: the error is an outage.
func (e *UnavailableError) Unavailable() bool { return true }

func unavailable(format string, args ...any) error {
	return &UnavailableError{Err: fmt.Errorf(format, args...)}
}

// IsUnavailable reports whether err is (or wraps) an outage.
func IsUnavailable(err error) bool {
	var u interface{ Unavailable() bool }
	return errors.As(err, &u) && u.Unavailable()
}

func ambiguous(n int) error {
	return fmt.Errorf("%w (%d entries)", ErrAmbiguous, n)
}

// ldapError gives a go-ldap result error a readable text: go-ldap's reads
// `LDAP Result Code 49 "Invalid Credentials": ` — ending in ": " when the
// server sends no diagnostic message. Unwrap keeps errors.As(*ldap.Error)
// and ldap.IsErrorAnyOf working.
type ldapError struct{ e *ldap.Error }

func (l ldapError) Error() string {
	s := fmt.Sprintf("LDAP result %d", l.e.ResultCode)
	if name, ok := ldap.LDAPResultCodeMap[l.e.ResultCode]; ok {
		s += " (" + name + ")"
	}
	if l.e.Err != nil {
		if m := strings.TrimSpace(l.e.Err.Error()); m != "" {
			s += ": " + m
		}
	}
	return s
}

func (l ldapError) Unwrap() error { return l.e }

// readable is applied where an error leaves go-ldap: a *ldap.Error gets
// ldapError's text, anything else is returned as is.
func readable(err error) error {
	if le, ok := err.(*ldap.Error); ok {
		return ldapError{le}
	}
	return err
}

// errList is errors.Join on one line ("a; b"): every URL's failure in one
// log line or message.
type errList []error

func (l errList) Error() string {
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

func (l errList) Unwrap() []error { return l }

// joinErrors is nil for none, the error itself for one, else an errList.
func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return errList(errs)
}
