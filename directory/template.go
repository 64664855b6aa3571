package directory

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// Fields are the identity fields a filter template may name, in the order
// used for cache keys.
var Fields = [...]string{"id", "upn", "email", "cn", "dns", "serial", "fingerprint"}

// matchNothing replaces a filter item whose placeholder has no value. Every
// entry has an objectClass, so the item is false; it is never a presence or
// wildcard match.
const matchNothing = "(!(objectClass=*))"

// template is a parsed filter template: literal text and filter items that
// contain placeholders.
type template struct {
	src   string
	segs  []segment
	names []string // placeholders used, deduplicated
}

// segment is literal text (field == "") or one placeholder inside the item
// [item.start, item.end) of src.
type segment struct {
	lit   string
	item  []part // non-nil: a filter item containing placeholders
	names []string
}

type part struct {
	lit   string
	field string // placeholder name; "" for a literal
}

func isField(name string) bool {
	for _, f := range Fields {
		if f == name {
			return true
		}
	}
	return false
}

// parseTemplate splits src at placeholders and checks that every placeholder
// sits inside a simple filter item and that the result compiles.
func parseTemplate(src string) (*template, error) {
	t := &template{src: src}
	type ph struct {
		start, end int
		name       string
	}
	var phs []ph
	for i := 0; i < len(src); i++ {
		if src[i] != '{' {
			continue
		}
		j := i + 1
		for j < len(src) && (src[j] >= 'a' && src[j] <= 'z') {
			j++
		}
		if j == i+1 || j >= len(src) || src[j] != '}' {
			continue
		}
		name := src[i+1 : j]
		if !isField(name) {
			return nil, fmt.Errorf("unknown placeholder {%s}", name)
		}
		phs = append(phs, ph{i, j + 1, name})
		i = j
	}
	pos := 0
	for k := 0; k < len(phs); {
		open := strings.LastIndexByte(src[:phs[k].start], '(')
		if open < 0 || strings.IndexByte(src[open:phs[k].start], ')') >= 0 || !strings.Contains(src[open:phs[k].start], "=") {
			return nil, fmt.Errorf("placeholder {%s} is not inside a filter item such as (attr={%s})", phs[k].name, phs[k].name)
		}
		closing := strings.IndexByte(src[phs[k].end:], ')')
		if closing < 0 {
			return nil, errors.New("unbalanced parentheses")
		}
		closing += phs[k].end
		if strings.IndexByte(src[phs[k].end:closing], '(') >= 0 {
			return nil, fmt.Errorf("placeholder {%s} is not inside a filter item", phs[k].name)
		}
		if open < pos {
			return nil, errors.New("two placeholders overlap")
		}
		if open > pos {
			t.segs = append(t.segs, segment{lit: src[pos:open]})
		}
		seg := segment{}
		at := open
		for ; k < len(phs) && phs[k].end <= closing; k++ {
			if phs[k].start > at {
				seg.item = append(seg.item, part{lit: src[at:phs[k].start]})
			}
			seg.item = append(seg.item, part{field: phs[k].name})
			seg.names = appendUnique(seg.names, phs[k].name)
			t.names = appendUnique(t.names, phs[k].name)
			at = phs[k].end
		}
		seg.item = append(seg.item, part{lit: src[at : closing+1]})
		t.segs = append(t.segs, seg)
		pos = closing + 1
	}
	if pos < len(src) {
		t.segs = append(t.segs, segment{lit: src[pos:]})
	}
	// The template must compile with values present and with none.
	full := map[string]string{}
	for _, f := range Fields {
		full[f] = "x"
	}
	for _, m := range []map[string]string{full, nil} {
		if _, err := ldap.CompileFilter(t.substitute(m)); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// substitute fills the template with fields, each value escaped with
// ldap.EscapeFilter; an item naming an absent or empty field becomes
// matchNothing.
func (t *template) substitute(fields map[string]string) string {
	var b strings.Builder
	b.Grow(len(t.src) + 32)
	for _, seg := range t.segs {
		if seg.item == nil {
			b.WriteString(seg.lit)
			continue
		}
		empty := false
		for _, n := range seg.names {
			if fields[n] == "" {
				empty = true
				break
			}
		}
		if empty {
			b.WriteString(matchNothing)
			continue
		}
		for _, p := range seg.item {
			if p.field == "" {
				b.WriteString(p.lit)
			} else {
				b.WriteString(ldap.EscapeFilter(fields[p.field]))
			}
		}
	}
	return b.String()
}
