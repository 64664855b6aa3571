package main

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Every configuration error reads `file:line: section.key: value: problem`
// (the line where the file gives one; the value unless it may be a
// secret), and every error of every section is reported in one pass:
// decoding goes section by section (and [[policy]] rule by rule), so a
// type error in one does not hide the others, and the sections the other
// packages validate are checked even when the policy does not compile.

// decodeSections decodes src into c one top-level key at a time. It returns
// the errors, formatted, and the key paths that failed (errors the compile
// step finds under them are not believed). A syntax error stops it: the
// parser cannot go on.
func decodeSections(file, src string, c *fileConfig, kl *keyLines) (md toml.MetaData, errs []string, failed []string, fatal error) {
	var raw map[string]toml.Primitive
	md, err := toml.Decode(src, &raw)
	if err != nil {
		return md, nil, nil, &configError{formatDecodeError(file, err, "-", kl)}
	}
	fail := func(key string, err error) {
		errs = append(errs, formatDecodeError(file, err, key, kl))
		failed = append(failed, key)
	}
	for _, f := range tomlFields(reflect.ValueOf(c).Elem()) {
		prim, ok := raw[f.name]
		if !ok {
			continue
		}
		if f.v.Kind() != reflect.Slice || f.v.Type().Elem().Kind() != reflect.Struct {
			if err := md.PrimitiveDecode(prim, f.v.Addr().Interface()); err != nil {
				fail(f.name, err)
			}
			continue
		}
		// An array of tables: one element at a time.
		var elems []toml.Primitive
		if err := md.PrimitiveDecode(prim, &elems); err != nil {
			fail(f.name, err)
			continue
		}
		f.v.Set(reflect.MakeSlice(f.v.Type(), len(elems), len(elems)))
		for i, e := range elems {
			if err := md.PrimitiveDecode(e, f.v.Index(i).Addr().Interface()); err != nil {
				fail(fmt.Sprintf("%s[%d]", f.name, i), err)
			}
		}
	}
	for _, k := range md.Undecoded() {
		key := k.String()
		if underAny(deindex(key), failed, true) {
			continue // the rest of a section that failed to decode
		}
		for _, full := range kl.indexedKeys(key) {
			errs = append(errs, locate(file, full+": unknown key", kl))
		}
	}
	return md, errs, failed, nil
}

// tomlField is a field of a config struct and its TOML key.
type tomlField struct {
	name string
	v    reflect.Value
	f    reflect.StructField
}

// tomlFields lists the fields of a config struct with their TOML names;
// embedded structs without a tag (sections) are flattened.
func tomlFields(v reflect.Value) []tomlField {
	var out []tomlField
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
		if sf.Anonymous && tag == "" {
			out = append(out, tomlFields(v.Field(i))...)
			continue
		}
		if tag == "" || tag == "-" || !sf.IsExported() {
			continue
		}
		out = append(out, tomlField{tag, v.Field(i), sf})
	}
	return out
}

// indexedKeys returns the indexed paths of the lines that set key (a path
// without indexes, as MetaData.Undecoded gives it); key itself if none.
func (k *keyLines) indexedKeys(key string) []string {
	var out []string
	for full := range k.exact {
		if deindex(full) == key {
			out = append(out, full)
		}
	}
	if len(out) == 0 {
		return []string{key}
	}
	sortByLine(out, k)
	return out
}

func sortByLine(keys []string, k *keyLines) {
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && k.exact[keys[j]] < k.exact[keys[j-1]]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
}

// underAny reports whether key is one of prefixes or below one of them.
func underAny(key string, prefixes []string, loose bool) bool {
	for _, p := range prefixes {
		if loose {
			p = deindex(p)
		}
		if key == p || strings.HasPrefix(key, p+".") || strings.HasPrefix(key, p+"[") {
			return true
		}
	}
	return false
}

var tomlErrRE = regexp.MustCompile(`^toml: (?:line (\d+)(?:, column \d+)? )?(?:\(last key "([^"]*)"\))?:? ?(.*)$`)
var incompatibleRE = regexp.MustCompile(`^incompatible types: TOML value has type ([^;]+); destination has type (.+)$`)

// formatDecodeError formats an error of the TOML decoder as
// file:line: key: value: problem. elem is the indexed path of the array
// element being decoded ("" for others); the decoder itself names keys
// without indexes; "-" for a syntax error (whose last key is only where
// the parser was).
func formatDecodeError(file string, err error, elem string, kl *keyLines) string {
	msg := err.Error()
	var pe toml.ParseError
	line, key := 0, ""
	if errors.As(err, &pe) {
		line, key, msg = pe.Line, pe.LastKey, pe.Message
		if msg == "" {
			msg = strings.TrimPrefix(pe.Error(), "toml: ")
		}
	} else if m := tomlErrRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		key, msg = m[2], m[3]
	}
	if elem != "" && strings.Contains(elem, "[") {
		// policy.wifi.vlan in the element policy[2] is policy[2].wifi.vlan
		base := deindex(elem)
		if key == base || strings.HasPrefix(key, base+".") {
			key = elem + strings.TrimPrefix(key, base)
		}
	}
	if m := incompatibleRE.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("want %s, not %s", tomlTypeName(m[2]), tomlTypeName(m[1]))
	}
	if elem == "-" {
		key = ""
	}
	if _, ok := kl.exact[key]; !ok && key != "" && key == deindex(key) {
		// in a nested array of tables the decoder gives no index; the
		// file may set the key once
		if full := kl.indexedKeys(key); len(full) == 1 {
			key = full[0]
		}
	}
	if key != "" {
		if n := kl.line(key); n > 0 && (line == 0 || strings.Contains(elem, "[")) {
			line = n
		}
		if v := kl.value[key]; v != "" && !secretKey(key) {
			msg = strconv.Quote(v) + ": " + msg
		}
		msg = key + ": " + msg
	}
	if line > 0 {
		return fmt.Sprintf("%s:%d: %s", file, line, msg)
	}
	return file + ": " + msg
}

func tomlTypeName(t string) string {
	switch t := strings.TrimSpace(t); t {
	case "string":
		return "a string"
	case "int64", "int", "int32", "uint16", "integer":
		return "an integer"
	case "float64", "float":
		return "a number"
	case "bool", "boolean":
		return "true or false"
	case "[]interface {}", "slice", "array":
		return "an array"
	case "map[string]interface {}", "struct", "map", "table":
		return "a table"
	default:
		return t
	}
}

// secretKey reports whether a key may hold a secret, whose value no error
// message repeats.
func secretKey(key string) bool {
	key = strings.ToLower(key)
	for _, s := range []string{"secret", "password", "private", "dsn", "token"} {
		if strings.Contains(key, s) {
			return true
		}
	}
	return false
}

var errKeyRE = regexp.MustCompile(`^([a-z][a-z0-9_]*(?:\[\d+\])?(?:\.[a-z0-9_]+(?:\[\d+\])?)*)(?::| \d| "|$)`)

// locate writes one error "key: problem" of file as
// "file:line: key: problem", the line found from the key.
func locate(file, msg string, kl *keyLines) string {
	if m := errKeyRE.FindStringSubmatch(msg); m != nil && kl != nil {
		if n := kl.line(m[1]); n > 0 {
			return fmt.Sprintf("%s:%d: %s", file, n, msg)
		}
	}
	return file + ": " + msg
}

// located splits err (a joined error, or lines) into located messages.
func locatedLines(file string, err error, kl *keyLines) []string {
	var out []string
	for _, s := range splitErr(err) {
		out = append(out, locate(file, s, kl))
	}
	return out
}

func splitErr(err error) []string {
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) && !isCaused(err) {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, splitErr(e)...)
		}
		return out
	}
	return strings.Split(err.Error(), "\n")
}

func isCaused(err error) bool {
	_, ok := err.(*causedError)
	return ok
}

var (
	pkgKeyRE = regexp.MustCompile(`^(directory|radius|vpn): (?:config: )?([a-z][a-z0-9_.]*(?:\[\d+\])?(?:\.[a-z0-9_]+)*)(?::| )\s*(.*)$`)
	clientRE = regexp.MustCompile(`^radius: client\[(\d+)\](?: "[^"]*")?: (?:([a-z][a-z0-9_]*) )?(.*)$`)
)

// sectionError rewrites an error of the directory, radius or vpn package
// ("radius: fragment_size 100: want 256..3000", "vpn: config: listen_port
// 0 out of range") in the one key style ("radius.fragment_size: 100: want
// 256..3000"), when it names a key of the section.
func sectionError(msg string) string {
	if m := clientRE.FindStringSubmatch(msg); m != nil {
		key := "radius.client[" + m[1] + "]"
		if m[2] != "" && knownKey(key+"."+m[2]) {
			key += "." + m[2]
		} else if m[2] != "" {
			m[3] = m[2] + " " + m[3]
		}
		return key + ": " + m[3]
	}
	if m := pkgKeyRE.FindStringSubmatch(msg); m != nil && knownKey(m[1]+"."+m[2]) {
		return m[1] + "." + m[2] + ": " + strings.TrimPrefix(m[3], ": ")
	}
	return msg
}

// knownKey reports whether key (indexes allowed) is a key of config.toml.
func knownKey(key string) bool {
	key = deindex(key)
	for _, k := range configKeys() {
		if k.Key == key || strings.HasPrefix(k.Key, key+".") {
			return true
		}
	}
	return false
}

// allSectionErrors reports every error of a section whose package stops at
// its first: after each error that names a key, it resets that key to its
// zero value (its default) in cfg, a copy of the section's Config, and
// validates again, until validation passes, names no new key, or names a
// key that is not a plain value (a whole table or array element).
func allSectionErrors(section string, first error, cfg any, validate func() error) []string {
	var out []string
	seen := map[string]bool{}
	v := reflect.ValueOf(cfg).Elem()
	for err, i := first, 0; err != nil && i < 64; i++ {
		progressed := false
		for _, e := range splitErr(err) {
			msg := sectionError(e)
			m := errKeyRE.FindStringSubmatch(msg)
			if seen[msg] || m != nil && seen["key "+m[1]] {
				continue // reported, or about a key reset to its zero value
			}
			seen[msg] = true
			out = append(out, msg)
			if m != nil {
				seen["key "+m[1]] = true
				if rest, ok := strings.CutPrefix(m[1], section+"."); ok && resetKey(v, rest) {
					progressed = true
				}
			}
		}
		if !progressed {
			break
		}
		err = validate()
	}
	return out
}

var pathPartRE = regexp.MustCompile(`^([a-z0-9_]+)(?:\[(\d+)\])?$`)

// resetKey sets the value a key path ("fragment_size",
// "client[0].coa_port") names in the config struct v to its zero value.
// Slices on the way are copied first, so the configuration cfg was copied
// from is not changed. It reports whether it found a plain value to reset.
func resetKey(v reflect.Value, path string) bool {
	parts := strings.Split(path, ".")
	for n, p := range parts {
		m := pathPartRE.FindStringSubmatch(p)
		if m == nil || v.Kind() != reflect.Struct {
			return false
		}
		var f reflect.Value
		for _, tf := range tomlFields(v) {
			if tf.name == m[1] {
				f = tf.v
			}
		}
		if !f.IsValid() {
			return false
		}
		last := n == len(parts)-1
		if m[2] != "" {
			idx, _ := strconv.Atoi(m[2])
			if f.Kind() != reflect.Slice || idx >= f.Len() || last {
				return false // a whole element: not a value to reset
			}
			c := reflect.MakeSlice(f.Type(), f.Len(), f.Len())
			reflect.Copy(c, f)
			f.Set(c)
			v = c.Index(idx)
			continue
		}
		if last {
			if k := f.Kind(); k == reflect.Struct && f.Type().Name() != "Duration" || k == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct {
				return false // a table
			}
			f.Set(reflect.Zero(f.Type()))
			return true
		}
		if f.Kind() == reflect.Pointer {
			if f.IsNil() {
				return false
			}
			c := reflect.New(f.Type().Elem())
			c.Elem().Set(f.Elem())
			f.Set(c)
			f = c.Elem()
		}
		v = f
	}
	return false
}
