package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/vpn"
	"github.com/gatehouse/gatehouse/vpn/pgstore"
	"github.com/gatehouse/gatehouse/vpn/vpntest"
)

// vpnKeyConfig writes the shipped config with the VPN enabled (and
// private_key_file set to keyFile unless it is empty); it returns the
// config file and the VPN's state directory.
func vpnKeyConfig(t *testing.T, keyFile string) (cfg, vpnDir string) {
	t.Helper()
	cfg = writeConfig(t, func(s string) string {
		s = replace(`enabled = false`, `enabled = true`)(s)
		s = replace(`listen_port = 51820`, fmt.Sprintf(`listen_port = %d`, freeUDPPort(t)))(s)
		s = replace(`enroll_listen = "127.0.0.1:8443"`, `enroll_listen = "127.0.0.1:0"`)(s)
		if keyFile != "" {
			s = replace(`expired_grace = "720h"`, "expired_grace = \"720h\"\nprivate_key_file = \""+keyFile+"\"")(s)
		}
		return s
	})
	l, err := loadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, filepath.Join(l.cfg.Server.StateDir, "vpn")
}

// enrollPeers stores n peer records (the first suspended) in the file
// registry of vpnDir, as enrollments left them.
func enrollPeers(t *testing.T, vpnDir string, n int) {
	t.Helper()
	st := vpn.NewFileStore(filepath.Join(vpnDir, "peers"))
	if err := os.MkdirAll(st.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	for i := range n {
		k, _ := vpn.GenerateKey()
		r := &vpn.PeerRecord{Version: 1, Fingerprint: fmt.Sprintf("%064x", i+1), Identity: "alice", IdentityKey: "user/upn/alice",
			NotAfter: at.AddDate(1, 0, 0), Address: netip.AddrFrom4([4]byte{100, 96, 0, byte(2 + i)}), Rule: "engineering",
			Enrolled: at, Updated: at, Validated: at, PublicKey: k.Public()}
		if i == 0 {
			r.Suspended = &vpn.Suspension{Since: at, Code: "no_rule", Reason: "no rule matches"}
		}
		if err := st.Save(r); err != nil {
			t.Fatal(err)
		}
	}
}

// runCmd3 runs gatehouse with args and returns its exit code, stdout and
// stderr; a serve that starts is stopped after 10 s.
func runCmd3(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code := run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

// A key file serve would refuse: check reports it as a configuration
// error (exit 2) naming the config file, the key (with its line when
// private_key_file sets it), the key file and what to do; serve refuses to
// start with the same error and exit code, before it listens.
func TestVPNKeyRefusedByCheckAndServe(t *testing.T) {
	garbage := filepath.Join(t.TempDir(), "garbage.key")
	os.WriteFile(garbage, []byte("not a key\n"), 0o600)
	for _, tt := range []struct {
		name    string
		keyFile string // "" = the state_dir default
		peers   int
		want    []string
	}{
		{"default missing, peers enrolled", "", 2, []string{`vpn: private key `, "/vpn/wg.key (the default in [server] state_dir, [vpn] private_key_file not set): missing",
			"2 enrolled peers (active or suspended)", "restore the key file from backup", `"gatehouse vpn genkey"`, "every VPN client must then re-enroll"}},
		{"explicit missing, empty registry", "/nonexistent/mnt/site-wg.key", 0, []string{`vpn.private_key_file: /nonexistent/mnt/site-wg.key: missing`, "volume mounted"}},
		{"explicit malformed", garbage, 0, []string{`vpn.private_key_file: ` + garbage + `: not a WireGuard private key`, `"gatehouse vpn genkey --force"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, vpnDir := vpnKeyConfig(t, tt.keyFile)
			enrollPeers(t, vpnDir, tt.peers)
			// Located at private_key_file's line, or the [vpn] table's.
			lineRE := regexp.QuoteMeta(cfg) + `:\d+: `
			wantKey := "vpn"
			if tt.keyFile != "" {
				wantKey = "vpn.private_key_file"
			}
			checkErr := func(what string, code int, stderr string) {
				t.Helper()
				if code != exitUsage {
					t.Errorf("%s: exit %d, want %d", what, code, exitUsage)
				}
				if !regexp.MustCompile(`(?m)^gatehouse: ` + lineRE + `vpn`).MatchString(stderr) {
					t.Errorf("%s: the error does not start with the config file (and line):\n%s", what, stderr)
				}
				for _, w := range tt.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("%s: stderr lacks %q:\n%s", what, w, stderr)
					}
				}
			}
			code, _, stderr := runCmd3("check", "--config", cfg)
			checkErr("check", code, stderr)
			code, out, _ := runCmd3("check", "--json", "--config", cfg)
			var rep checkReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitUsage || len(rep.Errors) != 1 ||
				!strings.Contains(rep.Errors[0].Message, tt.want[0]) || rep.Errors[0].Key != wantKey || rep.Errors[0].Line == 0 {
				t.Errorf("check --json: exit %d, %v, %+v", code, err, rep.Errors)
			}
			if have, err := effectiveCap(capNetAdmin); err != nil || !have {
				t.Skip("serve with the VPN needs CAP_NET_ADMIN before it reads the key")
			}
			code, _, stderr = runCmd3("serve", "--config", cfg)
			checkErr("serve", code, stderr)
			if _, err := os.Stat(filepath.Join(vpnDir, "wg.key")); err == nil {
				t.Error("serve wrote a key file")
			}
		})
	}
}

// check warns about a key file others may read; serve starts with it.
func TestCheckWarnsKeyFileMode(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "wg.key")
	if _, err := vpn.WriteKeyFile(keyFile, false); err != nil {
		t.Fatal(err)
	}
	os.Chmod(keyFile, 0o640)
	cfg, _ := vpnKeyConfig(t, keyFile)
	code, out, stderr := runCmd3("check", "--config", cfg)
	want := "warning: VPN private key " + keyFile + " is readable by group or others (mode 0640): chmod 600 it"
	if code != exitOK || !strings.Contains(out, want+"\n") {
		t.Fatalf("exit %d, want %q:\n%s%s", code, want, out, stderr)
	}
	os.Chmod(keyFile, 0o600)
	if code, out, _ := runCmd3("check", "--config", cfg); code != exitOK || strings.Contains(out, "readable by group") {
		t.Fatalf("0600: exit %d\n%s", code, out)
	}
}

var pubKeyRE = regexp.MustCompile(`(?m)^public key: ([A-Za-z0-9+/]{43}=)$`)

// gatehouse vpn genkey writes the configured key file (0600) and prints
// its public key; it refuses to replace a key without --force, and with
// it warns that every enrolled client must re-enroll. After it, check
// accepts the configuration it refused.
func TestVPNGenkey(t *testing.T) {
	cfg, vpnDir := vpnKeyConfig(t, "")
	enrollPeers(t, vpnDir, 3)
	keyFile := filepath.Join(vpnDir, "wg.key")
	if code, _, _ := runCmd3("check", "--config", cfg); code != exitUsage {
		t.Fatalf("check before genkey: exit %d", code)
	}

	code, out, stderr := runCmd3("vpn", "genkey", "--config", cfg)
	m := pubKeyRE.FindStringSubmatch(out)
	if code != exitOK || m == nil || !strings.Contains(out, "wrote "+keyFile+" (the default in [server] state_dir), mode 0600") {
		t.Fatalf("genkey: exit %d\n%s%s", code, out, stderr)
	}
	if !strings.Contains(stderr, "warning: the peer registry holds 3 enrolled VPN peer(s), whose configs name the old public key: every VPN client must re-enroll") {
		t.Errorf("genkey over a lost key: no re-enroll warning:\n%s", stderr)
	}
	k, perm, err := vpn.ReadKeyFile(keyFile)
	if err != nil || perm != 0o600 || k.Public().String() != m[1] {
		t.Fatalf("key file: %v, mode %04o, public %s, printed %s", err, perm, k.Public(), m[1])
	}
	if strings.Contains(out+stderr, k.String()) {
		t.Fatal("genkey printed the private key")
	}
	if code, out, stderr := runCmd3("check", "--config", cfg); code != exitOK {
		t.Fatalf("check after genkey: exit %d\n%s%s", code, out, stderr)
	}

	// An existing key is not replaced without --force.
	code, out, stderr = runCmd3("vpn", "genkey", "--config", cfg)
	if code != exitFailure || !strings.Contains(stderr, keyFile+" (the default in [server] state_dir) exists: not replaced") ||
		!strings.Contains(stderr, "--force replaces it") || out != "" {
		t.Fatalf("genkey again: exit %d\n%s%s", code, out, stderr)
	}
	if again, _, _ := vpn.ReadKeyFile(keyFile); again != k {
		t.Fatal("key replaced without --force")
	}
	code, out, stderr = runCmd3("vpn", "genkey", "--force", "--config", cfg)
	m2 := pubKeyRE.FindStringSubmatch(out)
	if code != exitOK || m2 == nil || m2[1] == m[1] || !strings.Contains(stderr, "every VPN client must re-enroll") {
		t.Fatalf("genkey --force: exit %d\n%s%s", code, out, stderr)
	}
	if k2, _, _ := vpn.ReadKeyFile(keyFile); k2.Public().String() != m2[1] {
		t.Fatal("--force: the printed public key is not the file's")
	}

	// An explicit private_key_file: created there, its directory made.
	explicit := filepath.Join(t.TempDir(), "keys", "site-wg.key")
	cfg2, _ := vpnKeyConfig(t, explicit)
	code, out, stderr = runCmd3("vpn", "genkey", "--config", cfg2)
	if code != exitOK || !strings.Contains(out, "wrote "+explicit+" ([vpn] private_key_file), mode 0600") || strings.Contains(stderr, "warning") {
		t.Fatalf("explicit: exit %d\n%s%s", code, out, stderr)
	}

	// Usage.
	if code, _, stderr := runCmd3("vpn"); code != exitUsage || !strings.Contains(stderr, "usage: gatehouse vpn genkey [--config FILE] [--force]") {
		t.Fatalf("vpn: exit %d %s", code, stderr)
	}
	if code, _, stderr := runCmd3("vpn", "genkey", "--config", cfg, "extra"); code != exitUsage || !strings.Contains(stderr, `unexpected argument "extra"`) {
		t.Fatalf("extra argument: exit %d %s", code, stderr)
	}
}

// With [store] backend = "postgres", the peers counted are the site's in
// the database: check refuses a node whose key file is missing while the
// site has peers, and genkey warns about them and about the other nodes.
func TestVPNKeyPostgresRegistry(t *testing.T) {
	pg := pgtest.Start(t)
	l := postgresVPNConfig(t, pg.CreateDatabase("gh_vpnkey"))
	s, err := buildServers(l, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.db.Close()
	s.migrateAtStart(context.Background(), slog.New(slog.DiscardHandler))
	if code, out, stderr := runCmd3("check", "--config", l.file); code != exitOK {
		t.Fatalf("empty site, no key (a first install): exit %d\n%s%s", code, out, stderr)
	}
	pst := pgstore.New(s.db, pgstore.Config{Site: "hq"}, nil)
	for i, addr := range []string{"100.96.0.7", "100.96.0.8"} {
		if err := pst.Save(vpntest.Record(t, i+7, addr)); err != nil {
			t.Fatal(err)
		}
	}
	code, _, stderr := runCmd3("check", "--config", l.file)
	if code != exitUsage || !strings.Contains(stderr, "wg.key (the default in [server] state_dir, [vpn] private_key_file not set): missing, but the peer registry holds 2 enrolled peers") {
		t.Fatalf("site with peers, no key: exit %d\n%s", code, stderr)
	}
	code, out, stderr := runCmd3("vpn", "genkey", "--config", l.file)
	if code != exitOK || !pubKeyRE.MatchString(out) || !strings.Contains(stderr, "holds 2 enrolled VPN peer(s)") ||
		!strings.Contains(stderr, "every node of the site must use this key") {
		t.Fatalf("genkey: exit %d\n%s%s", code, out, stderr)
	}
	if code, out, stderr := runCmd3("check", "--config", l.file); code != exitOK {
		t.Fatalf("after genkey: exit %d\n%s%s", code, out, stderr)
	}
}
