package policy

import (
	"encoding/hex"
	"errors"
	"strings"
)

// dnKey is a distinguished name reduced to a form in which two spellings of
// the same DN are equal strings: attribute types and values lower-cased,
// escapes resolved, spaces around separators dropped, and each value
// re-escaped minimally. "CN=R&D\, Lab" and "cn=R&D\2C Lab" have the same key.
type dnKey string

// parseDN parses an RFC 4514 distinguished name into its key and the value of
// its first (most specific) RDN, as written (e.g. "engineering").
func parseDN(s string) (key dnKey, first string, err error) {
	var b strings.Builder
	b.Grow(len(s))
	i, n := 0, 0
	for {
		// attribute type
		for i < len(s) && s[i] == ' ' {
			i++
		}
		j := strings.IndexByte(s[i:], '=')
		if j <= 0 {
			return "", "", errors.New("missing attribute type")
		}
		typ := strings.ToLower(strings.TrimSpace(s[i : i+j]))
		if typ == "" {
			return "", "", errors.New("empty attribute type")
		}
		i += j + 1
		val, next, err := dnValue(s, i)
		if err != nil {
			return "", "", err
		}
		if n == 0 {
			first = val
		}
		if n > 0 {
			b.WriteByte(',')
		}
		b.WriteString(typ)
		b.WriteByte('=')
		writeDNValue(&b, strings.ToLower(val))
		n++
		i = next
		if i >= len(s) {
			break
		}
		i++ // skip ',' '+' or ';'
	}
	return dnKey(b.String()), first, nil
}

// dnValue reads one attribute value starting at s[i] and returns it unescaped,
// with the index of the separator that ends it (or len(s)).
func dnValue(s string, i int) (string, int, error) {
	for i < len(s) && s[i] == ' ' {
		i++
	}
	var v []byte
	trail := 0 // trailing unescaped spaces to trim
	if i < len(s) && s[i] == '#' {
		j := i + 1
		for j < len(s) && s[j] != ',' && s[j] != '+' && s[j] != ';' {
			j++
		}
		return strings.TrimSpace(s[i:j]), j, nil
	}
	for i < len(s) {
		c := s[i]
		switch {
		case c == ',' || c == '+' || c == ';':
			return string(v[:len(v)-trail]), i, nil
		case c == '\\':
			if i+1 >= len(s) {
				return "", 0, errors.New("trailing backslash")
			}
			if isHex(s[i+1]) {
				if i+2 >= len(s) || !isHex(s[i+2]) {
					return "", 0, errors.New("bad hex escape")
				}
				var d [1]byte
				hex.Decode(d[:], []byte(s[i+1:i+3]))
				v = append(v, d[0])
				i += 3
			} else {
				v = append(v, s[i+1])
				i += 2
			}
			trail = 0
		case c == ' ':
			v = append(v, c)
			trail++
			i++
		default:
			v = append(v, c)
			trail = 0
			i++
		}
	}
	return string(v[:len(v)-trail]), i, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func writeDNValue(b *strings.Builder, v string) {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == ',' || c == '+' || c == '"' || c == '\\' || c == '<' || c == '>' || c == ';' || c == '=',
			i == 0 && (c == '#' || c == ' '), i == len(v)-1 && c == ' ':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
}
