package directory

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ldifEntry is one LDIF content record.
type ldifEntry struct {
	DN    string
	Attrs []ldifAttr // in file order
	Line  int        // line of the dn:
}

type ldifAttr struct {
	Name  string // attribute description as written (options kept)
	Value string
}

// Limits that keep a hostile or broken file from exhausting memory.
const (
	maxLDIFSize  = 64 << 20
	maxLineBytes = 1 << 20
)

// parseLDIF parses LDIF content records (RFC 2849): "dn:" first, then
// "attr: value", "attr:: base64" lines; lines starting with one space
// continue the previous line; "#" lines are comments; blank lines separate
// records. A leading "version: 1" is accepted, as is "changetype: add".
// URL values ("attr:< url") and other change records are rejected.
func parseLDIF(data []byte) ([]ldifEntry, error) {
	if len(data) > maxLDIFSize {
		return nil, fmt.Errorf("ldif: file larger than %d bytes", maxLDIFSize)
	}
	lines, err := unfold(data)
	if err != nil {
		return nil, err
	}
	var (
		out []ldifEntry
		cur *ldifEntry
	)
	flush := func() {
		if cur != nil {
			out = append(out, *cur)
			cur = nil
		}
	}
	first := true
	for _, ln := range lines {
		if ln.text == "" {
			flush()
			continue
		}
		name, value, err := parseLine(ln.text)
		if err != nil {
			return nil, fmt.Errorf("ldif: line %d: %w", ln.no, err)
		}
		lname := strings.ToLower(name)
		if first && cur == nil && lname == "version" {
			first = false
			if value != "1" {
				return nil, fmt.Errorf("ldif: line %d: unsupported version %q", ln.no, value)
			}
			continue
		}
		first = false
		if cur == nil {
			if lname != "dn" {
				return nil, fmt.Errorf("ldif: line %d: record must start with dn:, not %q", ln.no, name)
			}
			if _, err := canonDN(value); err != nil && value != "" {
				return nil, fmt.Errorf("ldif: line %d: dn %q: %v", ln.no, value, err)
			}
			cur = &ldifEntry{DN: value, Line: ln.no}
			continue
		}
		switch lname {
		case "dn":
			return nil, fmt.Errorf("ldif: line %d: second dn: in a record (missing blank line?)", ln.no)
		case "changetype":
			if strings.ToLower(value) != "add" {
				return nil, fmt.Errorf("ldif: line %d: changetype %q: only content records are supported", ln.no, value)
			}
			continue
		case "control":
			return nil, fmt.Errorf("ldif: line %d: controls are not supported", ln.no)
		}
		cur.Attrs = append(cur.Attrs, ldifAttr{Name: name, Value: value})
	}
	flush()
	return out, nil
}

type ldifLine struct {
	no   int
	text string
}

// unfold splits data into logical lines: CRLF or LF endings, continuation
// lines (leading space) joined, comments (and their continuations) dropped.
func unfold(data []byte) ([]ldifLine, error) {
	var (
		out       []ldifLine
		inComment bool
	)
	no := 0
	for len(data) > 0 {
		no++
		var raw []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			raw, data = data[:i], data[i+1:]
		} else {
			raw, data = data, nil
		}
		raw = bytes.TrimSuffix(raw, []byte{'\r'})
		if len(raw) > maxLineBytes {
			return nil, fmt.Errorf("ldif: line %d: longer than %d bytes", no, maxLineBytes)
		}
		switch {
		case len(raw) > 0 && raw[0] == ' ':
			if inComment {
				continue
			}
			if len(out) == 0 || out[len(out)-1].text == "" {
				return nil, fmt.Errorf("ldif: line %d: continuation line without a line to continue", no)
			}
			last := &out[len(out)-1]
			if len(last.text)+len(raw) > maxLineBytes {
				return nil, fmt.Errorf("ldif: line %d: folded line longer than %d bytes", no, maxLineBytes)
			}
			last.text += string(raw[1:])
		case len(raw) > 0 && raw[0] == '#':
			inComment = true
		default:
			inComment = false
			out = append(out, ldifLine{no: no, text: string(raw)})
		}
	}
	return out, nil
}

// parseLine splits "name: value", "name:: base64" and rejects "name:< url".
func parseLine(s string) (name, value string, err error) {
	i := strings.IndexByte(s, ':')
	if i <= 0 {
		return "", "", fmt.Errorf("%q: expected attr: value", truncate(s))
	}
	name = s[:i]
	if !validAttrDesc(name) {
		return "", "", fmt.Errorf("%q: bad attribute name", truncate(name))
	}
	rest := s[i+1:]
	switch {
	case strings.HasPrefix(rest, ":"):
		b, err := base64.StdEncoding.DecodeString(strings.TrimLeft(rest[1:], " "))
		if err != nil {
			return "", "", fmt.Errorf("%s: bad base64: %v", name, err)
		}
		value = string(b)
	case strings.HasPrefix(rest, "<"):
		return "", "", fmt.Errorf("%s: URL values are not supported", name)
	default:
		value = strings.TrimLeft(rest, " ")
		if !utf8.ValidString(value) {
			return "", "", fmt.Errorf("%s: value is not UTF-8 (use base64 ::)", name)
		}
	}
	return name, value, nil
}

// validAttrDesc accepts an attribute type name or OID with options.
func validAttrDesc(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ';') {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
