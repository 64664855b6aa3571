package main

import (
	"regexp"
	"strconv"
	"strings"
)

// keyLines finds the line of a config file that sets a key, so that errors
// found after decoding (BurntSushi's MetaData keeps no positions) read
// file:line. Keys are written as errors name them: section.key, with
// 0-based indexes for arrays of tables and arrays (policy[2].vpn.allow[1]).
// It reads table headers and key = value lines; a key it cannot place
// falls back to its nearest enclosing key or table.
type keyLines struct {
	exact map[string]int // indexed key path → line
	loose map[string]int // key path without indexes → its first line
	value map[string]string
}

// locateKeys scans a TOML file. It understands comments, quoted keys,
// multi-line arrays and multi-line strings well enough to skip them; it
// does not validate anything (the decoder does).
func locateKeys(src []byte) *keyLines {
	k := &keyLines{exact: map[string]int{}, loose: map[string]int{}, value: map[string]string{}}
	arrays := map[string]int{} // indexed path of an array of tables → its last index
	table := ""
	depth := 0    // open brackets/braces of a multi-line value
	inMulti := "" // the delimiter of an open multi-line string
	for i, line := range strings.Split(string(src), "\n") {
		n := i + 1
		if inMulti != "" {
			if strings.Contains(line, inMulti) {
				inMulti = ""
			}
			continue
		}
		if depth > 0 {
			depth += bracketBalance(line)
			continue
		}
		t := strings.TrimSpace(line)
		switch {
		case t == "" || t[0] == '#':
			continue
		case strings.HasPrefix(t, "[["):
			end := strings.Index(t, "]]")
			if end < 0 {
				continue
			}
			parts := keyParts(t[2:end])
			path := resolveTable(arrays, parts[:len(parts)-1])
			if path != "" {
				path += "."
			}
			path += parts[len(parts)-1]
			idx := 0
			if last, ok := arrays[path]; ok {
				idx = last + 1
			}
			arrays[path] = idx
			table = path + "[" + strconv.Itoa(idx) + "]"
			k.set(table, n, "")
		case t[0] == '[':
			end := strings.IndexByte(t, ']')
			if end < 0 {
				continue
			}
			table = resolveTable(arrays, keyParts(t[1:end]))
			k.set(table, n, "")
		default:
			eq := keyEnd(t)
			if eq < 0 {
				continue
			}
			key := strings.Join(keyParts(t[:eq]), ".")
			if table != "" {
				key = table + "." + key
			}
			v := strings.TrimSpace(t[eq+1:])
			for _, d := range []string{`"""`, `'''`} {
				if strings.HasPrefix(v, d) && !strings.Contains(v[3:], d) {
					inMulti = d
				}
			}
			if inMulti == "" {
				depth = bracketBalance(v)
			}
			k.set(key, n, scalarText(v))
		}
	}
	return k
}

func (k *keyLines) set(key string, line int, value string) {
	if _, ok := k.exact[key]; !ok {
		k.exact[key] = line
		k.value[key] = value
	}
	if l := deindex(key); k.loose[l] == 0 {
		k.loose[l] = line
	}
}

// line returns the line that sets key, or of its nearest enclosing key or
// table; 0 if none is found.
func (k *keyLines) line(key string) int {
	for key != "" {
		if n, ok := k.exact[key]; ok {
			return n
		}
		if n, ok := k.loose[deindex(key)]; ok {
			return n
		}
		key = parentKey(key)
	}
	return 0
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

func deindex(key string) string { return indexRE.ReplaceAllString(key, "") }

// parentKey drops the last index or component of a key path.
func parentKey(key string) string {
	if strings.HasSuffix(key, "]") {
		if i := strings.LastIndexByte(key, '['); i >= 0 {
			return key[:i]
		}
	}
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[:i]
	}
	return ""
}

// resolveTable writes a table header's path with the current index of
// every array of tables it passes through: [policy.wifi] after the third
// [[policy]] is policy[2].wifi.
func resolveTable(arrays map[string]int, parts []string) string {
	cur := ""
	for _, p := range parts {
		if cur != "" {
			cur += "."
		}
		cur += p
		if idx, ok := arrays[cur]; ok {
			cur += "[" + strconv.Itoa(idx) + "]"
		}
	}
	return cur
}

// keyParts splits a dotted key, unquoting quoted parts.
func keyParts(s string) []string {
	var parts []string
	var cur strings.Builder
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, strings.TrimSpace(cur.String()))
}

// keyEnd returns the index of the = that ends a line's key, or -1.
func keyEnd(s string) int {
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '=':
			return i
		case c == '#':
			return -1
		}
	}
	return -1
}

// bracketBalance counts the [ and { a value opens minus those it closes,
// outside strings and comments.
func bracketBalance(s string) int {
	n := 0
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' && quote == '"' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#':
			return n
		case c == '[' || c == '{':
			n++
		case c == ']' || c == '}':
			n--
		}
	}
	return n
}

// scalarText is a value as written, without its comment ("" for arrays,
// tables and multi-line strings).
func scalarText(v string) string {
	if v == "" || strings.ContainsAny(v[:1], "[{") || strings.HasPrefix(v, `"""`) || strings.HasPrefix(v, `'''`) {
		return ""
	}
	if v[0] == '"' || v[0] == '\'' {
		c := closingQuote(v)
		if c < 1 {
			return "" // an unterminated string: the decoder reports it
		}
		if s, err := strconv.Unquote(v[:c+1]); err == nil && v[0] == '"' {
			return s
		}
		return v[1:c]
	}
	if i := strings.IndexByte(v, '#'); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}

func closingQuote(v string) int {
	for i := 1; i < len(v); i++ {
		if v[0] == '"' && v[i] == '\\' {
			i++
			continue
		}
		if v[i] == v[0] {
			return i
		}
	}
	return len(v) - 1
}
