package main

import (
	"runtime/debug"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev},
			{Key: "vcs.time", Value: "2026-12-01T22:07:32Z"}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "deecac7933fd519cd4240a7f1a4928905bbf639b"
	for _, tc := range []struct {
		name, ldflags string
		bi            *debug.BuildInfo
		want          string
	}{
		{"ldflags win", "1.4.0", &debug.BuildInfo{Main: debug.Module{Version: "v9.9.9"}}, "1.4.0"},
		{"go install @version", "dev", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{"go install @latest, untagged", "dev", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201220732-deecac7933fd"}}, "v0.0.0-20261201220732-deecac7933fd"},
		{"git checkout", "dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "false")}, "(deecac7933fd 2026-12-01T22:07:32Z)"},
		{"dirty checkout", "dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "true")}, "(deecac7933fd+dirty 2026-12-01T22:07:32Z)"},
		{"Go 1.24 stamped pseudo-version", "dev", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201220732-deecac7933fd+dirty"}, Settings: vcs(rev, "true")}, "v0.0.0-20261201220732-deecac7933fd+dirty"},
		{"nothing known", "dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{"no build info", "dev", nil, "dev"},
	} {
		if got := buildVersion(tc.ldflags, tc.bi); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
