package main

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules keeps ARCHITECTURE.md's import rules true: policy imports
// no package of ours outside policy, directory none but the DN parser
// policy/dn (a leaf importing nothing of ours), radius and vpn never import
// each other, store (the shared-state backends) imports only policy, only
// cmd reads TOML, policy/jsonl (the line appender shared by the audit trail
// and accounting) and policy/atomicfile (the atomic file writer of every
// part's state) import nothing of ours, and netlimit (the listeners'
// connection caps, shared by vpn and cmd) and procs (the GOMAXPROCS
// controller) are standard library only. Only
// store, vpn/pgstore and cmd import the PostgreSQL driver: radius and vpn
// declare the interfaces they need and never wait on it (in the VPN door
// only vpn/pgstore, the PostgreSQL registry, imports store or pgx).
func TestImportRules(t *testing.T) {
	const mod = "github.com/gatehouse/gatehouse/"
	const dnPackage = "policy/dn"
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	ourImports := map[string][]string{} // package → the packages of ours it imports
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		seen++
		pkg := strings.TrimPrefix(p.ImportPath, mod)
		ourImports[pkg] = nil
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, mod) {
				ourImports[pkg] = append(ourImports[pkg], imp)
			}
		}
		top, _, _ := strings.Cut(pkg, "/")
		for _, imp := range p.Imports {
			ours := strings.HasPrefix(imp, mod)
			dep := strings.TrimPrefix(imp, mod)
			depTop, _, _ := strings.Cut(dep, "/")
			switch {
			case strings.HasPrefix(imp, "github.com/jackc/") && top != "store" && top != "cmd" && pkg != "vpn/pgstore":
				t.Errorf("%s imports %s: only store, vpn/pgstore (and cmd) speak to PostgreSQL; radius reaches it through radius.Shared", pkg, imp)
			case imp == "github.com/BurntSushi/toml" && top != "cmd":
				t.Errorf("%s imports toml: only cmd reads TOML", pkg)
			case ours && pkg == "policy/jsonl":
				t.Errorf("%s imports %s: the line appender is a leaf (standard library only)", pkg, dep)
			case ours && pkg == "policy/atomicfile":
				t.Errorf("%s imports %s: the atomic file writer is a leaf (standard library only)", pkg, dep)
			case top == "netlimit" && strings.Contains(strings.SplitN(imp, "/", 2)[0], "."):
				t.Errorf("%s imports %s: netlimit is standard library only", pkg, imp)
			case top == "procs" && (ours || strings.Contains(strings.SplitN(imp, "/", 2)[0], ".")):
				t.Errorf("%s imports %s: procs (the GOMAXPROCS controller) is standard library only", pkg, imp)
			case top == "vpn" && pkg != "vpn/pgstore" && (depTop == "store" || strings.HasPrefix(imp, "github.com/jackc/")):
				t.Errorf("%s imports %s: only vpn/pgstore reaches the database", pkg, imp)
			case !ours || depTop == top:
			case top == "directory" && dep == dnPackage:
				// The one DN parser, a stdlib-only leaf: allowed.
			case top == "policy" || top == "directory":
				t.Errorf("%s imports %s: %s may import no package of ours", pkg, dep, top)
			case top == "radius" && depTop == "vpn", top == "vpn" && depTop == "radius":
				t.Errorf("%s imports %s: radius and vpn never import each other", pkg, dep)
			case top == "store" && depTop != "policy":
				t.Errorf("%s imports %s: store may import only policy", pkg, dep)
			case top != "cmd" && depTop == "cmd":
				t.Errorf("%s imports %s", pkg, dep)
			}
		}
	}
	if leaf, ok := ourImports[dnPackage]; !ok || len(leaf) > 0 {
		t.Errorf("%s must exist and import no package of ours (imports %v)", dnPackage, leaf)
	}
	if seen < 3 {
		t.Fatalf("go list saw only %d packages", seen)
	}
}
