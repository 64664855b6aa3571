// Package dn parses RFC 4514 distinguished names and reduces them to one
// canonical form, so that two spellings of the same name compare equal and
// two different names never do. It is the one DN parser of gatehouse: the
// policy (group conditions of rules), the directory (entries, base DNs,
// member values) and anything else that compares DNs use it.
//
// The canonical form follows LDAP's distinguishedNameMatch with
// case-insensitive values (caseIgnoreMatch, as for cn, ou, dc, uid…):
//
//   - attribute types are lower-cased ("CN" → "cn"); numeric OIDs are kept
//     as written ("2.5.4.3" is not mapped to "cn");
//   - values are unescaped (`\,`, `\2C`, `\C3\AB`) and lower-cased; a value
//     written as "#" and the hex of a BER string (e.g. "#0403616263") is that
//     string; any other "#" value stays binary and compares byte for byte;
//   - the values of a multi-valued RDN ("cn=a+ou=b") are sorted, so
//     "ou=b+cn=a" is the same RDN, and "+" never equals "," ("cn=a,ou=b" is
//     two RDNs, a different name);
//   - in the canonical string every special character of a value is written
//     as a hex escape (`\2c`, `\2b`, …), so an unescaped "," or "+" in it is
//     always a separator.
//
// Unescaped spaces around "=", ",", "+" and at the ends of a value are not
// part of the name; ";" is accepted as an RDN separator (RFC 2253). The
// package imports only the standard library.
package dn

import (
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// AVA is one attribute type and value of an RDN, canonical: Type lower-cased,
// Value unescaped and (unless Binary) lower-cased.
type AVA struct {
	Type   string
	Value  string // the string value; for Binary, the raw bytes
	Binary bool   // written as "#hex" and not a BER string
}

// RDN is one relative distinguished name: one or more AVAs, sorted.
type RDN []AVA

// DN is a parsed distinguished name, most specific RDN first. The empty DN
// (the root) has no RDN.
type DN struct {
	RDNs []RDN
	// First is the value of the first RDN as written (unescaped, case
	// kept) when that RDN has exactly one AVA, e.g. "Engineering" for
	// "cn=Engineering,ou=groups,…"; "" otherwise.
	First string
}

// Error is a DN that does not parse: where and why.
type Error struct {
	Offset int // byte offset in the input
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("dn: at byte %d: %s", e.Offset, e.Msg) }

func errAt(i int, format string, a ...any) error {
	return &Error{Offset: i, Msg: fmt.Sprintf(format, a...)}
}

// Parse parses an RFC 4514 string. "" is the empty DN.
func Parse(s string) (DN, error) {
	var d DN
	p := parser{s: s}
	p.skipSpaces()
	if p.i == len(s) {
		return d, nil
	}
	for {
		rdn, first, err := p.rdn()
		if err != nil {
			return DN{}, err
		}
		if len(d.RDNs) == 0 && len(rdn) == 1 {
			d.First = first
		}
		d.RDNs = append(d.RDNs, rdn)
		if p.i == len(s) {
			return d, nil
		}
		// p.rdn stops only at the end or at ',' or ';'.
		p.i++
	}
}

type parser struct {
	s string
	i int
}

func (p *parser) skipSpaces() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

// rdn reads AVAs separated by '+' up to ',', ';' or the end. first is the
// first AVA's value as written (unescaped, case kept).
func (p *parser) rdn() (RDN, string, error) {
	var rdn RDN
	var first string
	for {
		a, raw, err := p.ava()
		if err != nil {
			return nil, "", err
		}
		if len(rdn) == 0 {
			first = raw
		}
		rdn = append(rdn, a)
		if p.i == len(p.s) || p.s[p.i] != '+' {
			break
		}
		p.i++
	}
	slices.SortFunc(rdn, compareAVA)
	rdn = slices.CompactFunc(rdn, func(a, b AVA) bool { return compareAVA(a, b) == 0 })
	return rdn, first, nil
}

func compareAVA(a, b AVA) int {
	if c := strings.Compare(a.Type, b.Type); c != 0 {
		return c
	}
	if a.Binary != b.Binary {
		if a.Binary {
			return 1
		}
		return -1
	}
	return strings.Compare(a.Value, b.Value)
}

// ava reads "type=value"; it returns the canonical AVA and the value with
// its case kept.
func (p *parser) ava() (AVA, string, error) {
	p.skipSpaces()
	start := p.i
	typ, err := p.attrType()
	if err != nil {
		return AVA{}, "", err
	}
	end := p.i
	p.skipSpaces()
	if p.i == len(p.s) || p.s[p.i] != '=' {
		return AVA{}, "", errAt(p.i, "missing '=' after attribute type %q", p.s[start:end])
	}
	p.i++
	p.skipSpaces()
	if p.i < len(p.s) && p.s[p.i] == '#' {
		v, bin, err := p.hexValue()
		if err != nil {
			return AVA{}, "", err
		}
		if bin {
			return AVA{Type: typ, Value: v, Binary: true}, v, nil
		}
		return AVA{Type: typ, Value: strings.ToLower(v)}, v, nil
	}
	v, err := p.stringValue()
	if err != nil {
		return AVA{}, "", err
	}
	return AVA{Type: typ, Value: strings.ToLower(v)}, v, nil
}

// attrType reads a descr (ALPHA *(ALPHA / DIGIT / "-")) or a numericoid
// (number 1*("." number)) and returns it lower-cased.
func (p *parser) attrType() (string, error) {
	start := p.i
	if p.i == len(p.s) {
		return "", errAt(p.i, "missing attribute type")
	}
	c := p.s[p.i]
	switch {
	case isAlpha(c):
		for p.i < len(p.s) && (isAlpha(p.s[p.i]) || isDigit(p.s[p.i]) || p.s[p.i] == '-') {
			p.i++
		}
	case isDigit(c):
		for {
			n := p.i
			for p.i < len(p.s) && isDigit(p.s[p.i]) {
				p.i++
			}
			if p.i == n {
				return "", errAt(p.i, "bad numeric OID")
			}
			if p.i == len(p.s) || p.s[p.i] != '.' {
				break
			}
			p.i++
		}
		if !strings.Contains(p.s[start:p.i], ".") {
			return "", errAt(start, "bad numeric OID %q", p.s[start:p.i])
		}
	default:
		return "", errAt(p.i, "missing attribute type")
	}
	return strings.ToLower(p.s[start:p.i]), nil
}

// hexValue reads "#" and hex digits. When the bytes are one BER string
// (UTF8String, PrintableString, IA5String, OCTET STRING, T61String,
// VisibleString, NumericString) holding valid UTF-8, it returns that string
// and bin = false; otherwise the raw bytes and bin = true.
func (p *parser) hexValue() (v string, bin bool, err error) {
	p.i++ // '#'
	start := p.i
	for p.i < len(p.s) && isHex(p.s[p.i]) {
		p.i++
	}
	h := p.s[start:p.i]
	p.skipSpaces()
	if p.i < len(p.s) && !isSep(p.s[p.i]) {
		return "", false, errAt(p.i, "unexpected %q in hex value", p.s[p.i])
	}
	if len(h) == 0 || len(h)%2 != 0 {
		return "", false, errAt(start, "hex value needs an even, non-zero number of digits")
	}
	b, _ := hex.DecodeString(h)
	var rv asn1.RawValue
	rest, err := asn1.Unmarshal(b, &rv)
	if err == nil && len(rest) == 0 && rv.Class == asn1.ClassUniversal && !rv.IsCompound && utf8.Valid(rv.Bytes) {
		switch rv.Tag {
		case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String, asn1.TagOctetString,
			asn1.TagT61String, 26 /* VisibleString */, asn1.TagNumericString:
			return string(rv.Bytes), false, nil
		}
	}
	return string(b), true, nil
}

// stringValue reads an escaped string value up to a separator, unescaping
// it and dropping unescaped trailing spaces.
func (p *parser) stringValue() (string, error) {
	var v []byte
	keep := 0 // length of v up to its last byte that is not an unescaped trailing space
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case isSep(c):
			return p.checkUTF8(v[:keep])
		case c == '\\':
			if p.i+1 >= len(p.s) {
				return "", errAt(p.i, "trailing backslash")
			}
			e := p.s[p.i+1]
			if isHex(e) {
				if p.i+2 >= len(p.s) || !isHex(p.s[p.i+2]) {
					return "", errAt(p.i, "bad hex escape")
				}
				b, _ := hex.DecodeString(p.s[p.i+1 : p.i+3])
				v = append(v, b[0])
				p.i += 3
			} else {
				v = append(v, e)
				p.i += 2
			}
			keep = len(v)
		case c == '"' || c == '<' || c == '>' || c == 0:
			return "", errAt(p.i, "%q must be escaped", c)
		case c == ' ':
			v = append(v, c)
			p.i++
		default:
			v = append(v, c)
			keep = len(v)
			p.i++
		}
	}
	return p.checkUTF8(v[:keep])
}

func (p *parser) checkUTF8(v []byte) (string, error) {
	if !utf8.Valid(v) {
		return "", errAt(p.i, "value is not valid UTF-8")
	}
	return string(v), nil
}

func isSep(c byte) bool   { return c == ',' || c == '+' || c == ';' }
func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isHex(c byte) bool   { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// String returns the canonical form: RDNs joined by ",", the sorted AVAs of
// an RDN by "+", each "type=value" with the value hex-escaped where RFC 4514
// requires an escape (and for every control character), binary values as
// "#" and lower-case hex. Two DNs are the same name exactly when their
// canonical forms are equal.
func (d DN) String() string {
	var b strings.Builder
	for i, rdn := range d.RDNs {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, a := range rdn {
			if j > 0 {
				b.WriteByte('+')
			}
			b.WriteString(a.Type)
			b.WriteByte('=')
			if a.Binary {
				b.WriteByte('#')
				b.WriteString(hex.EncodeToString([]byte(a.Value)))
				continue
			}
			writeValue(&b, a.Value)
		}
	}
	return b.String()
}

const hexDigits = "0123456789abcdef"

func writeValue(b *strings.Builder, v string) {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == ',' || c == '+' || c == ';' || c == '"' || c == '\\' || c == '<' || c == '>' || c == '=' || c < 0x20 || c == 0x7f,
			i == 0 && (c == '#' || c == ' '), i == len(v)-1 && c == ' ':
			b.WriteByte('\\')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
}

// Canonical parses s and returns its canonical form.
func Canonical(s string) (string, error) {
	d, err := Parse(s)
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

// Equal reports whether a and b parse and name the same entry.
func Equal(a, b string) bool {
	x, err1 := Canonical(a)
	y, err2 := Canonical(b)
	return err1 == nil && err2 == nil && x == y
}

// IsUnder reports whether d is base or an entry below it.
func (d DN) IsUnder(base DN) bool {
	n, m := len(d.RDNs), len(base.RDNs)
	if m > n {
		return false
	}
	for i := range m {
		if !slices.Equal(d.RDNs[n-m+i], base.RDNs[i]) {
			return false
		}
	}
	return true
}

// IsUnderCanonical is IsUnder for two canonical strings (from String or
// Canonical): c is base or below it. It relies on the canonical form
// escaping every "," inside a value.
func IsUnderCanonical(c, base string) bool {
	return base == "" || c == base || strings.HasSuffix(c, ","+base)
}
