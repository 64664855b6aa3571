package dist

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

// examplePKI maps the files config.example.toml names (under
// /etc/gatehouse) to test PKI files standing in for them; "" is a secret.
var examplePKI = policytest.ExamplePKI()

// notForTheService are files an admin may leave in /etc/gatehouse that the
// service must not read: a CA's private key, a backup made with umask 077.
var notForTheService = []string{"pki/example-corp-root-ca-2024.key", "config.toml.bak"}

// requireRoot skips (or fails under GATEHOUSE_REQUIRE_INTEROP=1) unless the
// test can chown files and switch users.
func requireRoot(t *testing.T) {
	t.Helper()
	policytest.RequireInterop(t, os.Geteuid() == 0, "not root: cannot create users, chown, or switch to the service user")
}

// testRoot is an empty directory the service user can traverse.
func testRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for d := root; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if strings.HasPrefix(filepath.Base(d), "Test") || d == root {
			os.Chmod(d, 0o755)
		}
	}
	return root
}

// layFiles does what the README tells the admin to do after installing:
// put the CA, CRLs, server certificate and key in /etc/gatehouse/pki and
// the secrets in /etc/gatehouse/secrets, root:gatehouse 0640 (`install -m
// 0640 -o root -g gatehouse FILE /etc/gatehouse/pki/`). It also leaves the
// root-only files the service must not read, and rewrites the config's
// absolute paths into root (the file keeps its owner and mode).
func layFiles(t *testing.T, root string, gid uint32) {
	t.Helper()
	etc := filepath.Join(root, "etc/gatehouse")
	for dst, src := range examplePKI {
		b := []byte("a-long-random-shared-secret-0123456789\n")
		if src != "" {
			var err error
			if b, err = os.ReadFile(filepath.Join("../../../testdata/pki", src)); err != nil {
				t.Fatal(err)
			}
		}
		p := filepath.Join(etc, dst)
		if err := os.WriteFile(p, b, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 0, int(gid)); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, 0o640)
	}
	for _, f := range notForTheService {
		if err := os.WriteFile(filepath.Join(etc, f), []byte("root only\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(etc, "config.toml")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(`"/etc/gatehouse/`, `"`+etc+`/`, `"/var/lib/gatehouse"`, `"`+filepath.Join(root, "var/lib/gatehouse")+`"`).Replace(string(b))
	if err := os.WriteFile(cfg, []byte(s), 0o640); err != nil {
		t.Fatal(err)
	}
}

// asUser runs a command as uid:gid with no supplementary groups.
func asUser(uid, gid uint32, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	cmd.Dir = "/"
	return cmd
}

// checkServiceAccess checks, as the service user, that it can read all it
// needs (config, CAs, CRLs, server certificate and key, secrets), write its
// state, and run `gatehouse check`; and that it can read nothing else in
// /etc/gatehouse nor change anything there.
func checkServiceAccess(t *testing.T, root, bin string) {
	t.Helper()
	uid, gid := ids(t, root)
	etc := filepath.Join(root, "etc/gatehouse")
	state := filepath.Join(root, "var/lib/gatehouse")
	sh := func(script, p string) error { return asUser(uid, gid, "/bin/sh", "-c", script, "sh", p).Run() }
	read := func(p string) error { return sh(`exec cat -- "$1" >/dev/null 2>&1`, p) }
	write := func(p string) error { return sh(`exec 2>/dev/null; echo x >>"$1"`, p) }

	need := []string{filepath.Join(etc, "config.toml")}
	for f := range examplePKI {
		need = append(need, filepath.Join(etc, f))
	}
	for _, p := range need {
		if err := read(p); err != nil {
			t.Errorf("uid %d cannot read %s", uid, p)
		}
	}
	if err := write(filepath.Join(state, "probe")); err != nil {
		t.Errorf("uid %d cannot write in state_dir %s", uid, state)
	}
	os.Remove(filepath.Join(state, "probe"))
	for _, f := range notForTheService {
		if err := read(filepath.Join(etc, f)); err == nil {
			t.Errorf("uid %d can read %s (root only)", uid, f)
		}
	}
	for _, p := range []string{filepath.Join(etc, "config.toml"), filepath.Join(etc, "new-file"), filepath.Join(etc, "pki/new-ca.pem"), filepath.Join(root, "etc/shadow")} {
		if err := write(p); err == nil {
			t.Errorf("uid %d can write %s", uid, p)
		}
	}
	if err := read(filepath.Join(root, "etc/shadow")); err == nil {
		t.Errorf("uid %d can read etc/shadow", uid)
	}
	out, err := asUser(uid, gid, bin, "check", "-config", filepath.Join(etc, "config.toml")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Errorf("gatehouse check as uid %d: %v\n%s", uid, err, out)
	}
}

// TestInstallScript runs the README's install (install.sh --root) into a
// temp root and checks what the service user can and cannot do there.
func TestInstallScript(t *testing.T) {
	requireRoot(t)
	policytest.RequireTool(t, "systemd-sysusers")
	bin := gatehouse(t)
	root := testRoot(t)
	out, err := exec.Command("./install.sh", "--root", root, bin, "../../../config.example.toml").CombinedOutput()
	if err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	for _, f := range []string{"usr/local/bin/gatehouse", "etc/systemd/system/gatehouse.service", "etc/sysusers.d/gatehouse.conf", "etc/tmpfiles.d/gatehouse.conf"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Error(err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/systemd/system/gatehouse.service")); !strings.Contains(string(b), "ExecStart=/usr/local/bin/gatehouse serve") {
		t.Error("installed unit does not run /usr/local/bin/gatehouse")
	}
	checkModes(t, root)
	layFiles(t, root, mustGID(t, root))
	checkServiceAccess(t, root, filepath.Join(root, "usr/local/bin/gatehouse"))

	// Running it again (an upgrade) changes nothing and keeps the config.
	cfg, _ := os.ReadFile(filepath.Join(root, "etc/gatehouse/config.toml"))
	if out, err := exec.Command("./install.sh", "--root", root, bin, "../../../config.example.toml").CombinedOutput(); err != nil {
		t.Fatalf("install.sh again: %v\n%s", err, out)
	}
	if again, _ := os.ReadFile(filepath.Join(root, "etc/gatehouse/config.toml")); string(again) != string(cfg) {
		t.Error("a second install.sh replaced the configuration")
	}
	checkModes(t, root)

	// With the VPN on and no CAP_NET_ADMIN (the unit's default), serve
	// stops at once and says how to grant it. Everything else is pointed
	// at loopback in case it did not.
	uid, gid := ids(t, root)
	cfg = []byte(strings.NewReplacer(
		"enabled = false", "enabled = true",
		`["ldaps://dc1.example.com", "ldaps://dc2.example.com"]`, `["ldaps://127.0.0.1:1"]`,
		`listen = ":1812"`, `listen = "127.0.0.1:0"`,
		`accounting_listen = ":1813"`, `accounting_listen = "off"`,
		`enroll_listen = ":8443"`, `enroll_listen = "127.0.0.1:0"`,
		`metrics_listen = "127.0.0.1:9812"`, `metrics_listen = ""`,
	).Replace(string(cfg)))
	f := filepath.Join(root, "etc/gatehouse/config.toml")
	if err := os.WriteFile(f, cfg, 0o640); err != nil {
		t.Fatal(err)
	}
	cmd := asUser(uid, gid, filepath.Join(root, "usr/local/bin/gatehouse"), "serve", "-config", f)
	out, err = cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "vpn.enabled = true needs CAP_NET_ADMIN") || !strings.Contains(string(out), "drop-in") {
		t.Errorf("serve with the VPN, without CAP_NET_ADMIN: exit %d (%v), want 2 and the fix:\n%s", code, err, out)
	}
}

func mustGID(t *testing.T, root string) uint32 {
	_, gid := ids(t, root)
	return gid
}

// checkModes checks owner, group and mode of what install.sh sets up.
func checkModes(t *testing.T, root string) {
	t.Helper()
	uid, gid := ids(t, root)
	for _, c := range []struct {
		path     string
		uid, gid uint32
		mode     os.FileMode
	}{
		{"etc/gatehouse", 0, gid, os.ModeDir | 0o750},
		{"etc/gatehouse/pki", 0, gid, os.ModeDir | 0o750},
		{"etc/gatehouse/secrets", 0, gid, os.ModeDir | 0o750},
		{"etc/gatehouse/config.toml", 0, gid, 0o640},
		{"var/lib/gatehouse", uid, gid, os.ModeDir | 0o750},
	} {
		fi, err := os.Stat(filepath.Join(root, c.path))
		if err != nil {
			t.Error(err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != c.uid || st.Gid != c.gid || fi.Mode() != c.mode {
			t.Errorf("%s: %d:%d %v, want %d:%d %v", c.path, st.Uid, st.Gid, fi.Mode(), c.uid, c.gid, c.mode)
		}
	}
}
