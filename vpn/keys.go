package vpn

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/curve25519"
)

// Key is a WireGuard (Curve25519) key.
type Key [32]byte

// GenerateKey returns a new, clamped private key.
func GenerateKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("vpn: generate key: %w", err)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// Public returns the public key of private key k.
func (k Key) Public() Key {
	var p Key
	out, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		return Key{} // only for low-order points, impossible with the basepoint
	}
	copy(p[:], out)
	return p
}

// String returns the base64 form used by wg and wg-quick.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

func (k Key) hex() string { return hex.EncodeToString(k[:]) }

// IsZero reports whether k is all zeros.
func (k Key) IsZero() bool { return k == Key{} }

// IsLowOrder reports whether k, taken as a public key, is a low-order point
// of Curve25519 in any encoding (all zeros included): a Diffie-Hellman with
// it gives all zeros whatever the private key, so a session keyed by it is
// no secret. X25519 clamps every scalar to a multiple of the cofactor 8, so
// any low-order point (order 1, 2, 4 or 8) maps to zero, which
// curve25519.X25519 reports as an error; any scalar will do.
func (k Key) IsLowOrder() bool {
	_, err := curve25519.X25519(lowOrderProbe[:], k[:])
	return err != nil
}

var lowOrderProbe = [32]byte{1}

var errBadKey = errors.New("want 32 bytes in standard base64")

// ParseKey parses a base64 WireGuard key.
func ParseKey(s string) (Key, error) {
	var k Key
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != len(k) {
		return Key{}, errBadKey
	}
	copy(k[:], b)
	return k, nil
}

// MarshalText implements encoding.TextMarshaler (base64).
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (base64).
func (k *Key) UnmarshalText(b []byte) error {
	v, err := ParseKey(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}
