package directory

import (
	"errors"
	"fmt"
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
