package main

//go:generate go test -run TestConfigReference -update .

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestConfigReference generates docs/config.md from the key table
// (configKeys: the toml tags of the Config structs) and the fields' doc
// comments, and fails when the file is stale or a key has no doc comment.
// `go generate ./cmd/gatehouse` (or this test with -update) rewrites it.
func TestConfigReference(t *testing.T) {
	docs := fieldDocs(t)
	var undocumented []string
	got := configReference(docs, func(key string) { undocumented = append(undocumented, key) })
	if len(undocumented) > 0 {
		t.Errorf("keys without a doc comment on their field (write one; docs/config.md is generated from it):\n  %s",
			strings.Join(undocumented, "\n  "))
	}
	f := "../../docs/config.md"
	if *update {
		if err := os.WriteFile(f, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(f)
	if err != nil {
		t.Fatalf("%v (run go generate ./cmd/gatehouse)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/config.md is stale: run go generate ./cmd/gatehouse")
	}
}

// TestConfigReferenceCoversKeys: every key of the shipped config.toml is
// in the key table (which the reference documents).
func TestConfigReferenceCoversKeys(t *testing.T) {
	kl := locateKeys(mustRead(t, "../../config.toml"))
	for k := range kl.exact {
		if !knownKey(k) {
			t.Errorf("config.toml sets %s, which the key table lacks", k)
		}
	}
	if len(configKeys()) < 50 {
		t.Fatalf("only %d keys", len(configKeys()))
	}
}

func mustRead(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fieldDoc is a struct field's doc comment; see names the previous field
// when the field has none and follows it directly (one comment for both).
type fieldDoc struct {
	text, see string
}

// fieldDocs reads the doc comments of every struct field of the packages
// the key table draws from: package path → "Type.Field" → doc.
func fieldDocs(t *testing.T) map[string]map[string]fieldDoc {
	t.Helper()
	out := map[string]map[string]fieldDoc{}
	const mod = "github.com/gatehouse/gatehouse/"
	for _, k := range configKeys() {
		if _, ok := out[k.GoPkg]; ok {
			continue
		}
		dir := "."
		if rest, ok := strings.CutPrefix(k.GoPkg, mod); ok {
			dir = filepath.Join("../..", rest)
		}
		docs := map[string]fieldDoc{}
		out[k.GoPkg] = docs
		fset := token.NewFileSet()
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				ts, ok := n.(*ast.TypeSpec)
				if !ok {
					return true
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					return true
				}
				prev, prevEnd := "", 0
				for _, fld := range st.Fields.List {
					text := strings.TrimSpace(fld.Doc.Text())
					if text == "" {
						text = strings.TrimSpace(fld.Comment.Text())
					}
					for _, name := range fld.Names {
						d := fieldDoc{text: text}
						if text == "" && prev != "" && fset.Position(fld.Pos()).Line == prevEnd+1 {
							d.see = prev
						}
						docs[ts.Name.Name+"."+name.Name] = d
						prev = name.Name
					}
					prevEnd = fset.Position(fld.End()).Line
				}
				return true
			})
		}
	}
	return out
}

var defaultRE = regexp.MustCompile(`(?i)\bdefaults?(?: is| to)?:? (\S[^;\n]*?)(?:[;)]|\.(?:\s|$)|,\s|$)`)

// configReference renders docs/config.md.
func configReference(docs map[string]map[string]fieldDoc, undocumented func(string)) []byte {
	var b bytes.Buffer
	b.WriteString(`# Configuration reference

Every key of config.toml. **Generated** from the code (the toml tags of the
Config structs and their fields' doc comments) by
` + "`go generate ./cmd/gatehouse`" + `; do not edit by hand. A test fails when a key
has no doc comment or this file is stale.

*Applies*: **reload** — a reload (a changed file, SIGHUP, ` + "`gatehouse reload`" + `)
applies a change; **restart** — the change takes effect at the next start, and
a reload logs a warning naming the section.

Array indexes in error messages are 0-based: ` + "`policy[0]`" + ` is the first
` + "`[[policy]]`" + `. Every file ends with the line ` + "`[end]`" + `.
`)
	keys := configKeys()
	byGo := map[string]string{} // GoPkg.Type.Field → key
	for _, k := range keys {
		byGo[k.GoPkg+"."+k.GoType+"."+k.GoField] = k.Key
	}
	section := ""
	for _, k := range keys {
		top, _, nested := strings.Cut(k.Key, ".")
		d := docs[k.GoPkg][k.GoType+"."+k.GoField]
		text := d.text
		if text == "" && d.see != "" && !k.Table {
			if other := byGo[k.GoPkg+"."+k.GoType+"."+d.see]; other != "" {
				text = "See `" + other + "`."
			}
		}
		if text == "" && !k.Table {
			undocumented(k.Key)
		}
		text = strings.Join(strings.Fields(text), " ")
		if r, ok := strings.CutPrefix(text, k.GoField+": "); ok {
			text = "`" + k.Key[strings.LastIndexByte(k.Key, '.')+1:] + "`: " + r
		} else if r, ok := strings.CutPrefix(text, k.GoField+" "); ok {
			text = "`" + k.Key[strings.LastIndexByte(k.Key, '.')+1:] + "` " + r
		} else if r, ok := strings.CutPrefix(text, k.GoField+", "); ok {
			text = "`" + k.Key[strings.LastIndexByte(k.Key, '.')+1:] + "`, " + r
		}
		if !nested && (k.Table || section == "" || section != "top") {
			if k.Table {
				section = top
				hdr := "[" + top + "]"
				if k.Type == "array of tables" {
					hdr = "[[" + top + "]]"
				}
				fmt.Fprintf(&b, "\n## %s\n\n", hdr)
				if text != "" {
					b.WriteString(text + "\n\n")
				}
				applies := "reload"
				if k.Restart {
					applies = "restart"
				}
				if k.Type == "table" && !hasSubKeys(keys, k.Key) {
					continue // [end]
				}
				fmt.Fprintf(&b, "Applies at: **%s**.\n\n| key | type | default | description |\n|---|---|---|---|\n", applies)
				continue
			}
			if section != "top" {
				section = "top"
				b.WriteString("\n## Top-level keys\n\nApplies at: **reload**.\n\n| key | type | default | description |\n|---|---|---|---|\n")
			}
		}
		def := defaultOf(text)
		typ := k.Type
		if k.Type == "array of tables" {
			typ = "array of tables `[[" + k.Key + "]]`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", k.Key, typ, cell(def), cell(text))
	}
	return b.Bytes()
}

var (
	parenDefaultRE = regexp.MustCompile(`\(default ([^,;):]+)`)
	defaultMarkRE  = regexp.MustCompile(`("[^"]*"|[\w./-]+) \((?:the default\b|default[:)])`)
	offByDefault   = regexp.MustCompile(`(?i)\b(off|on) by default\b`)
)

// defaultOf finds a key's default in its doc comment: "(default X)", "X
// (default)", "X (the default…", "default X".
func defaultOf(text string) string {
	if m := offByDefault.FindStringSubmatch(text); m != nil {
		return strings.ToLower(m[1])
	}
	if m := parenDefaultRE.FindStringSubmatch(text); m != nil {
		return strings.TrimSpace(m[1])
	}
	if m := defaultMarkRE.FindStringSubmatch(text); m != nil {
		return m[1]
	}
	for _, ix := range defaultRE.FindAllStringSubmatchIndex(text, -1) {
		if strings.HasSuffix(text[:ix[0]], "the ") {
			continue
		}
		if rest := text[ix[2]:]; strings.HasPrefix(rest, "[") {
			if i := strings.IndexByte(rest, ']'); i >= 0 {
				return rest[:i+1]
			}
		}
		v := strings.TrimSpace(text[ix[2]:ix[3]])
		if i := strings.Index(v, " ("); i >= 0 && !strings.Contains(v[i:], ")") {
			v = v[:i]
		}
		return v
	}
	return ""
}

func hasSubKeys(keys []configKey, key string) bool {
	for _, k := range keys {
		if strings.HasPrefix(k.Key, key+".") {
			return true
		}
	}
	return false
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
