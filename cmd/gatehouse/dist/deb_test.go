package dist

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

var (
	debOnce sync.Once
	debFile string
	debErr  error
)

// buildDeb runs deb/build.sh once with the test's binary (gzip: xz costs
// half a minute of CPU) and returns the .deb, kept beside the binary.
func buildDeb(t *testing.T) string {
	t.Helper()
	policytest.RequireTool(t, "dpkg-deb")
	bin := gatehouse(t)
	debOnce.Do(func() {
		out, err := exec.Command("sh", "deb/build.sh", "-o", filepath.Dir(bin), "-v", "1.0~test", "-b", bin, "-Z", "gzip").CombinedOutput()
		debFile = strings.TrimSpace(string(out))
		if err != nil || !strings.HasSuffix(debFile, ".deb") {
			debErr = fmt.Errorf("build.sh: %v\n%s", err, out)
		}
	})
	if debErr != nil {
		t.Fatal(debErr)
	}
	return debFile
}

// TestDebPackage builds the package and checks its contents; as root it
// unpacks it into a temp root, runs what postinst runs there, and checks
// the service user's access and `gatehouse check` from the package.
func TestDebPackage(t *testing.T) {
	deb := buildDeb(t)
	out, err := exec.Command("dpkg-deb", "--contents", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{ // path → mode and owner as dpkg-deb lists them
		"./usr/bin/gatehouse":                           "-rwxr-xr-x root/root",
		"./lib/systemd/system/gatehouse.service":        "-rw-r--r-- root/root",
		"./usr/lib/sysusers.d/gatehouse.conf":           "-rw-r--r-- root/root",
		"./usr/lib/tmpfiles.d/gatehouse.conf":           "-rw-r--r-- root/root",
		"./usr/lib/gatehouse/install.sh":                "-rwxr-xr-x root/root",
		"./etc/gatehouse/":                              "drwxr-x--- root/root",
		"./etc/gatehouse/config.toml":                   "-rw-r----- root/root",
		"./etc/gatehouse/pki/":                          "drwxr-x--- root/root",
		"./etc/gatehouse/secrets/":                      "drwxr-x--- root/root",
		"./usr/share/doc/gatehouse/README.md":           "-rw-r--r-- root/root",
		"./usr/share/doc/gatehouse/config.example.toml": "-rw-r--r-- root/root",
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			continue
		}
		if w, ok := want[f[5]]; ok {
			if got := f[0] + " " + f[1]; got != w {
				t.Errorf("%s: %s, want %s", f[5], got, w)
			}
			delete(want, f[5])
		}
	}
	for p := range want {
		t.Errorf("the package lacks %s", p)
	}
	for field, w := range map[string]string{"Package": "gatehouse", "Version": "1.0~test", "Depends": "systemd | adduser, iproute2"} {
		if got, _ := exec.Command("dpkg-deb", "-f", deb, field).Output(); strings.TrimSpace(string(got)) != w {
			t.Errorf("control %s: %q, want %q", field, got, w)
		}
	}
	ctl := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "--control", deb, ctl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --control: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(ctl, "conffiles")); strings.TrimSpace(string(b)) != "/etc/gatehouse/config.toml" {
		t.Errorf("conffiles: %q", b)
	}
	// The conffile is the production example; the package's unit is the
	// repository's.
	root := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	for pkg, repo := range map[string]string{"etc/gatehouse/config.toml": "../../../config.example.toml", "lib/systemd/system/gatehouse.service": "gatehouse.service"} {
		a, _ := os.ReadFile(filepath.Join(root, pkg))
		b, _ := os.ReadFile(repo)
		if len(a) == 0 || string(a) != string(b) {
			t.Errorf("packaged %s differs from %s", pkg, repo)
		}
	}

	requireRoot(t)
	policytest.RequireTool(t, "systemd-sysusers")
	root = testRoot(t)
	if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	os.Chmod(root, 0o755)
	// postinst runs `install.sh --no-files`; here under --root.
	if out, err := exec.Command(filepath.Join(root, "usr/lib/gatehouse/install.sh"), "--root", root, "--no-files").CombinedOutput(); err != nil {
		t.Fatalf("install.sh --no-files: %v\n%s", err, out)
	}
	checkModes(t, root)
	layFiles(t, root, mustGID(t, root))
	checkServiceAccess(t, root, filepath.Join(root, "usr/bin/gatehouse"))
}

// TestDebInstall installs the package into this machine with dpkg, checks
// the service user's access and `gatehouse check` there, and purges it.
// It changes the system, so it runs only when GATEHOUSE_TEST_DEB_INSTALL=1
// (set by .ci/run, on a throwaway machine) and gatehouse is not installed.
func TestDebInstall(t *testing.T) {
	if os.Getenv("GATEHOUSE_TEST_DEB_INSTALL") != "1" {
		t.Skip("installs a package on this machine: set GATEHOUSE_TEST_DEB_INSTALL=1 (CI does)")
	}
	requireRoot(t)
	policytest.RequireTool(t, "dpkg")
	if err := exec.Command("dpkg-query", "-W", "-f=${Status}", "gatehouse").Run(); err == nil {
		if out, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", "gatehouse").Output(); strings.Contains(string(out), "installed") {
			t.Skip("a gatehouse package is installed here already; not touching it")
		}
	}
	for _, p := range []string{"/etc/gatehouse", "/var/lib/gatehouse"} {
		if _, err := os.Stat(p); err == nil {
			t.Skipf("%s exists; not touching it", p)
		}
	}
	deb := buildDeb(t)
	purge := func() {
		for f := range examplePKI {
			os.Remove(filepath.Join("/etc/gatehouse", f))
		}
		for _, f := range notForTheService {
			os.Remove(filepath.Join("/etc/gatehouse", f))
		}
		if out, err := exec.Command("dpkg", "--purge", "gatehouse").CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge: %v\n%s", err, out)
		}
	}
	out, err := exec.Command("dpkg", "-i", deb).CombinedOutput()
	t.Cleanup(func() {
		if _, err := os.Stat("/usr/bin/gatehouse"); err == nil {
			purge()
		}
	})
	if err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "systemctl enable --now gatehouse") {
		t.Errorf("postinst did not say how to start the service:\n%s", out)
	}
	checkModes(t, "/")
	// Files an admin adds, as the README says (the config is the packaged
	// example: its paths are already /etc/gatehouse/…).
	_, gid := ids(t, "/")
	b, _ := os.ReadFile("/etc/gatehouse/config.toml")
	layFiles(t, "/", gid)
	if after, _ := os.ReadFile("/etc/gatehouse/config.toml"); string(after) != string(b) {
		t.Fatal("layFiles changed the packaged config under /")
	}
	checkServiceAccess(t, "/", "/usr/bin/gatehouse")

	purge()
	// The state directory goes too, since nothing was in it.
	for _, p := range []string{"/usr/bin/gatehouse", "/lib/systemd/system/gatehouse.service", "/etc/gatehouse", "/var/lib/gatehouse"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left after dpkg --purge", p)
		}
	}
}
