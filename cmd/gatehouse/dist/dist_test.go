package dist

import (
	"bufio"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

var (
	buildOnce sync.Once
	binDir    string
	binErr    error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// gatehouse builds the binary once, as a release build without -ldflags:
// static (CGO_ENABLED=0), -trimpath.
func gatehouse(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "gatehouse-dist"); binErr != nil {
			return
		}
		os.Chmod(binDir, 0o755)
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(binDir, "gatehouse"), "github.com/gatehouse/gatehouse/cmd/gatehouse")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "gatehouse")
}

// unit parses a systemd unit file into its [Service] (etc.) directives,
// in order; repeated keys keep every value.
func unit(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		d[k] = append(d[k], v)
	}
	return d
}

// TestUnitHardening: the unit runs as the static gatehouse user, is
// Type=notify with a reload that waits for its result, grants no
// capability, and confines devices, /proc, mounts and system calls; it
// never owns /run/wireguard.
func TestUnitHardening(t *testing.T) {
	d := unit(t, "gatehouse.service")
	want := map[string]string{
		"Type":                    "notify",
		"NotifyAccess":            "main",
		"User":                    "gatehouse",
		"Group":                   "gatehouse",
		"ExecStart":               "/usr/bin/gatehouse serve --config /etc/gatehouse/config.toml",
		"ExecStartPre":            "/usr/bin/gatehouse check --config /etc/gatehouse/config.toml",
		"ExecReload":              "/usr/bin/gatehouse reload --config /etc/gatehouse/config.toml",
		"StateDirectory":          "gatehouse",
		"CapabilityBoundingSet":   "",
		"AmbientCapabilities":     "",
		"DevicePolicy":            "closed",
		"DeviceAllow":             "/dev/net/tun rw",
		"ProtectProc":             "invisible",
		"ProcSubset":              "pid",
		"PrivateMounts":           "yes",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"SystemCallArchitectures": "native",
		"SystemCallErrorNumber":   "EPERM",
	}
	for k, v := range want {
		if got := d[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"DynamicUser", "RuntimeDirectory", "RuntimeDirectoryPreserve"} {
		if v, ok := d[k]; ok {
			t.Errorf("%s=%q: the static user, and /run/wireguard is shared (tmpfiles.d), never owned", k, v)
		}
	}
	var deny bool
	for _, v := range d["SystemCallFilter"] {
		if strings.HasPrefix(v, "~") && strings.Contains(v, "@privileged") && strings.Contains(v, "@mount") {
			deny = true
		}
	}
	if !deny {
		t.Errorf("SystemCallFilter=%q: no deny list (~@privileged @mount …)", d["SystemCallFilter"])
	}
	if tf, _ := os.ReadFile("gatehouse.tmpfiles"); !strings.Contains(string(tf), "d /run/wireguard 1775 root gatehouse -") {
		t.Errorf("gatehouse.tmpfiles: %q", tf)
	}
	if su, _ := os.ReadFile("gatehouse.sysusers"); !strings.Contains(string(su), "u gatehouse - ") {
		t.Errorf("gatehouse.sysusers: %q", su)
	}
}

// TestUnitVerify runs systemd-analyze verify on the unit (its ExecStart
// pointed at a real binary) and its offline security score.
func TestUnitVerify(t *testing.T) {
	sa := policytest.RequireTool(t, "systemd-analyze")
	bin := gatehouse(t)
	b, err := os.ReadFile("gatehouse.service")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "gatehouse.service")
	if err := os.WriteFile(f, []byte(strings.ReplaceAll(string(b), "/usr/bin/gatehouse", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", f).CombinedOutput()
	// verify also reports on unrelated units installed on the machine;
	// only lines about this one count.
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "gatehouse") {
			ours = append(ours, l)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(ours, "\n"))
	}
	// The exposure score (0 safest … 10): 1.6 today; fail past 2.0.
	out, err = exec.Command(sa, "security", "--offline=true", "--threshold=20", f).CombinedOutput()
	last := strings.TrimSpace(string(out))
	last = last[strings.LastIndex(last, "\n")+1:]
	if err != nil {
		t.Errorf("systemd-analyze security --threshold=20: %v: %s", err, last)
	}
	t.Log(last)
}

// TestContainerfile checks the image definition without a container
// engine: a static build, distroless/static, a non-root user, no shell
// needed at run time.
func TestContainerfile(t *testing.T) {
	b, err := os.ReadFile("Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		if strings.HasPrefix(l, "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("instruction before FROM: %s", l)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], l)
	}
	if len(stages) != 2 {
		t.Fatalf("%d stages, want build + runtime", len(stages))
	}
	build, final := strings.Join(stages[0], "\n"), stages[1]
	if !strings.Contains(build, "CGO_ENABLED=0 go build") {
		t.Error("build stage: no CGO_ENABLED=0 go build")
	}
	if !strings.HasPrefix(final[0], "FROM gcr.io/distroless/static-debian12:nonroot") {
		t.Errorf("runtime stage: %s", final[0])
	}
	var user, entry string
	for _, l := range final {
		switch {
		case strings.HasPrefix(l, "RUN "):
			t.Errorf("runtime stage runs a command (distroless has no shell): %s", l)
		case strings.HasPrefix(l, "USER "):
			user = strings.TrimPrefix(l, "USER ")
		case strings.HasPrefix(l, "ENTRYPOINT "):
			entry = strings.TrimPrefix(l, "ENTRYPOINT ")
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("USER %q: the image must run as non-root", user)
	}
	if entry != `["/usr/bin/gatehouse"]` {
		t.Errorf("ENTRYPOINT %s: want the exec form (no shell)", entry)
	}
}

// TestStaticBinary: the release build has no ELF interpreter and no shared
// library, so it runs on distroless/static, and was built without cgo.
func TestStaticBinary(t *testing.T) {
	bin := gatehouse(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: dynamically linked")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs %v", libs)
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range bi.Settings {
		if s.Key == "CGO_ENABLED" && s.Value != "0" {
			t.Errorf("CGO_ENABLED=%s", s.Value)
		}
	}
}

// TestGoInstallable: nothing stops `go install
// github.com/gatehouse/gatehouse/cmd/gatehouse@latest` (which ignores
// replace directives and must build without a C toolchain): go.mod has no
// replace, and the command builds with CGO_ENABLED=0 (TestStaticBinary).
func TestGoInstallable(t *testing.T) {
	out, err := exec.Command("go", "mod", "edit", "-json", "../../../go.mod").Output()
	if err != nil {
		t.Fatal(err)
	}
	var mod struct {
		Module  struct{ Path string }
		Replace []json.RawMessage
	}
	if err := json.Unmarshal(out, &mod); err != nil {
		t.Fatal(err)
	}
	if len(mod.Replace) > 0 {
		t.Errorf("go.mod has replace directives; go install …@latest refuses them: %s", mod.Replace)
	}
	if mod.Module.Path != "github.com/gatehouse/gatehouse" {
		t.Errorf("module path %q", mod.Module.Path)
	}
}

// TestVersion: without -ldflags, `gatehouse version` prints what Go
// recorded in the binary (the VCS revision in a git checkout, the module
// version after go install …@vX), never a bare "dev" when that is known;
// with -ldflags it prints the given version.
func TestVersion(t *testing.T) {
	bin := gatehouse(t)
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSpace(string(out))
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var must []string // what the output must contain
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		must = append(must, v)
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(must) == 0 {
			must = append(must, s.Value[:12])
		}
	}
	if len(must) == 0 {
		must = append(must, "dev") // nothing recorded (a build outside git, -buildvcs=false)
	}
	for _, m := range must {
		if !strings.HasPrefix(got, "gatehouse ") || !strings.Contains(got, m) {
			t.Errorf("version %q lacks %q from the build info", got, m)
		}
	}
	t.Logf("%s (build info: %s)", got, bi.Main.Version)

	// A tagged release build.
	tagged := filepath.Join(t.TempDir(), "gatehouse")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version=1.4.0", "-o", tagged, "github.com/gatehouse/gatehouse/cmd/gatehouse")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	if out, err := exec.Command(tagged, "version").Output(); err != nil || strings.TrimSpace(string(out)) != "gatehouse 1.4.0" {
		t.Errorf("-ldflags version: %q %v", out, err)
	}
}

// ids reads the gatehouse user's uid and gid from root/etc/passwd.
func ids(t *testing.T, root string) (uid, gid uint32) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) > 3 && f[0] == "gatehouse" {
			u, _ := strconv.Atoi(f[2])
			g, _ := strconv.Atoi(f[3])
			return uint32(u), uint32(g)
		}
	}
	t.Fatalf("no gatehouse user in %s/etc/passwd", root)
	return
}
