package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestCIDepsOnlyInstalls keeps .ci/deps to installing packages: it runs as
// root on admins' machines too, where slapd or FreeRADIUS may be a production
// service, so it must never stop, kill or disable a daemon.
func TestCIDepsOnlyInstalls(t *testing.T) {
	b, err := os.ReadFile("../../.ci/deps")
	if err != nil {
		t.Fatal(err)
	}
	bad := regexp.MustCompile(`\b(pkill|killall|kill|systemctl|service|invoke-rc\.d|update-rc\.d)\b`)
	for i, line := range strings.Split(string(b), "\n") {
		if code, _, _ := strings.Cut(line, "#"); bad.MatchString(code) {
			t.Errorf(".ci/deps:%d touches running daemons: %s", i+1, line)
		}
	}
}
