package main

import (
	"runtime/debug"
	"strings"
)

// buildVersion is what `gatehouse version` prints: the version set with
// -ldflags "-X main.version=…" if any, else what the Go toolchain recorded
// in the binary (debug.ReadBuildInfo): the module version for `go install
// …@v1.2.3`, or the VCS revision, its time and "+dirty" for a build from a
// git checkout.
func buildVersion(ldflags string, bi *debug.BuildInfo) string {
	if ldflags != "" && ldflags != "dev" {
		return ldflags
	}
	if bi == nil {
		return "dev"
	}
	v := bi.Main.Version
	if v == "(devel)" {
		v = ""
	}
	var rev, when string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	var parts []string
	if v != "" {
		parts = append(parts, v)
	}
	// A pseudo-version already names the revision; say it once.
	if rev != "" && (v == "" || !strings.Contains(v, rev[:min(12, len(rev))])) {
		r := rev[:min(12, len(rev))]
		if dirty {
			r += "+dirty"
		}
		parts = append(parts, "("+r)
		if when != "" {
			parts[len(parts)-1] += " " + when
		}
		parts[len(parts)-1] += ")"
	}
	if len(parts) == 0 {
		return "dev"
	}
	return strings.Join(parts, " ")
}

// versionString is buildVersion for this binary.
func versionString() string {
	bi, _ := debug.ReadBuildInfo()
	return buildVersion(version, bi)
}
