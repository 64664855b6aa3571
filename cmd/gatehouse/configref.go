package main

import (
	"encoding"
	"reflect"
	"strings"
	"sync"
)

// configKey is one key of config.toml, read from the toml tags of the
// Config structs (fileConfig and the section types it holds). It is the
// one key table: docs/config.md is generated from it (with the fields' doc
// comments; see configdoc_test.go), and errors are checked against it.
type configKey struct {
	Key     string // dotted path without indexes, e.g. "policy.wifi.vlan"
	Type    string // as a person writes it: "string", "integer", "duration", ...
	Table   bool   // a table or an array of tables, not a value
	Restart bool   // a change takes effect at restart (else at reload)
	// Go identifies the field for its doc comment: package path, struct
	// type name and field name.
	GoPkg, GoType, GoField string
}

var configKeys = sync.OnceValue(func() []configKey {
	var out []configKey
	walkKeys(reflect.TypeOf(fileConfig{}), "", false, &out)
	return out
})

// restartSections are the top-level keys whose changes a reload does not
// apply; reload.go warns about them. The policy ([trust], [identity],
// [[policy]], deny_all) reloads.
var restartSections = []string{"server", "store", "directory", "radius", "vpn"}

func walkKeys(t reflect.Type, prefix string, restart bool, out *[]configKey) {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
		if sf.Anonymous && tag == "" {
			walkKeys(sf.Type, prefix, restart, out)
			continue
		}
		if tag == "" || tag == "-" || !sf.IsExported() {
			continue
		}
		key := prefix + tag
		r := restart
		if prefix == "" {
			for _, s := range restartSections {
				r = r || tag == s
			}
		}
		typ, sub := keyType(sf.Type)
		k := configKey{Key: key, Type: typ, Table: sub != nil, Restart: r,
			GoPkg: t.PkgPath(), GoType: t.Name(), GoField: sf.Name}
		*out = append(*out, k)
		if sub != nil && sub.NumField() > 0 {
			walkKeys(sub, key+".", r, out)
		}
	}
}

var textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()

// keyType describes a Go field type as its TOML type; sub is the struct of
// a table or array of tables.
func keyType(t reflect.Type) (string, reflect.Type) {
	if t.Kind() == reflect.Pointer && (t.Elem().Kind() != reflect.Struct || t.Implements(textUnmarshaler)) {
		t = t.Elem()
	}
	switch {
	case t.Name() == "Duration":
		return `duration ("90s", "8h")`, nil
	case t.Name() == "Text":
		return "string or integer", nil
	case reflect.PointerTo(t).Implements(textUnmarshaler):
		return "string", nil
	}
	switch t.Kind() {
	case reflect.String:
		return "string", nil
	case reflect.Bool:
		return "boolean", nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer", nil
	case reflect.Float32, reflect.Float64:
		return "number", nil
	case reflect.Pointer:
		return "table", t.Elem()
	case reflect.Struct:
		return "table", t
	case reflect.Slice:
		if e := t.Elem(); e.Kind() == reflect.Struct {
			return "array of tables", e
		}
		e, _ := keyType(t.Elem())
		return "array of " + e + "s", nil
	case reflect.Map:
		e, _ := keyType(t.Elem())
		return "table of " + e, nil
	}
	return t.String(), nil
}
