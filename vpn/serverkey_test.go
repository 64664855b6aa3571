package vpn

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/policytest"
)

// keyServer returns a netstack server on dir (not started), logging to
// logs; mutate edits its Config.
func keyServer(t *testing.T, dir string, logs *policytest.SyncBuffer, mutate func(*Config)) *Server {
	t.Helper()
	port := freeUDPPort(t)
	cfg := Config{Enabled: true, ListenPort: port, Endpoint: "127.0.0.1:1", AddressPool: "100.96.0.0/24",
		EnrollListen: "127.0.0.1:0", StateDir: dir, UseNetstack: true, RevalidateEvery: policy.Duration{Duration: time.Hour}}
	if mutate != nil {
		mutate(&cfg)
	}
	ca := newTestCA(t)
	srv, err := New(cfg, &fakeAuth{}, &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "gh", true)}, ClientAuth: tls.RequireAnyClientCert},
		slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// runKeyServer runs srv until it is ready (nil) or Run fails (its error).
func runKeyServer(t *testing.T, srv *Server) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	select {
	case err := <-errc:
		cancel()
		return err
	case <-srv.Ready():
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("Run neither failed nor became ready")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	})
	return nil
}

// storePeers writes n records into dir's registry, the first suspended if
// suspended is set.
func storePeers(t *testing.T, dir string, n int, suspended bool) {
	t.Helper()
	st := newStore(NewFileStore(filepath.Join(dir, "peers")), slog.New(slog.DiscardHandler))
	if err := os.MkdirAll(filepath.Join(dir, "peers"), 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r := &record{Fingerprint: fp(i + 1), Identity: "x", IdentityKey: "cn/x", PublicKey: newPub(t),
			Address: netip.AddrFrom4([4]byte{100, 96, 0, byte(10 + i)}), Rule: "engineering", Access: engineeringAccess,
			Updated: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		if i == 0 && suspended {
			r.Suspended = &Suspension{Since: time.Now(), Code: "no_rule", Reason: "no rule matches"}
		}
		if err := st.save(r); err != nil {
			t.Fatal(err)
		}
	}
}

// A missing key file is generated only on a first install (the StateDir
// default, an empty registry); with enrolled peers (active or suspended),
// or when private_key_file names it, Run and CheckKey refuse, the error
// naming the file, the key, the peers and the way out, and nothing is
// written.
func TestMissingKeyRefused(t *testing.T) {
	for _, tt := range []struct {
		name      string
		explicit  bool
		peers     int
		suspended bool
		want      []string // in the error; nil: generated
	}{
		{"first install", false, 0, false, nil},
		{"default, enrolled peers", false, 3, false,
			[]string{"private key ", "wg.key (the default in [server] state_dir, [vpn] private_key_file not set)", "3 enrolled peers", "restore the key file from backup", `"gatehouse vpn genkey"`, "re-enroll"}},
		{"default, one suspended peer", false, 1, true, []string{"1 enrolled peer (active or suspended)"}},
		{"explicit, empty registry", true, 0, false,
			[]string{"vpn: private_key_file: ", "site.key: missing", "never generated", "volume mounted", `"gatehouse vpn genkey"`}},
		{"explicit, enrolled peers", true, 2, false, []string{"vpn: private_key_file: ", "2 enrolled peers"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkGoroutines(t)
			dir := t.TempDir()
			storePeers(t, dir, tt.peers, tt.suspended)
			keyFile := filepath.Join(dir, KeyFileName)
			var logs policytest.SyncBuffer
			srv := keyServer(t, dir, &logs, func(c *Config) {
				if tt.explicit {
					keyFile = filepath.Join(t.TempDir(), "site.key")
					c.PrivateKeyFile = keyFile
				}
			})
			checkErr := srv.CheckKey()
			runErr := runKeyServer(t, srv)
			if tt.want == nil {
				if checkErr != nil || runErr != nil {
					t.Fatalf("CheckKey %v, Run %v", checkErr, runErr)
				}
				k, perm, err := ReadKeyFile(keyFile)
				if err != nil || perm != 0o600 || k.Public() != srv.PublicKey() {
					t.Fatalf("generated key: %v, mode %04o", err, perm)
				}
				return
			}
			for _, err := range []error{checkErr, runErr} {
				var ke *KeyError
				if !errors.As(err, &ke) || !ke.Missing() || ke.Path != keyFile || ke.Peers != tt.peers {
					t.Fatalf("want a *KeyError for the missing %s with %d peers, got %#v", keyFile, tt.peers, err)
				}
				for _, w := range append(tt.want, keyFile) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, err)
					}
				}
			}
			if _, err := os.Lstat(keyFile); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("key file written despite the refusal: %v", err)
			}
		})
	}
}

// A key file that is there but unusable is refused, named, never
// regenerated over and never quoted; no panic.
func TestBadKeyFileRefused(t *testing.T) {
	good, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	secret := good.String()
	for _, tt := range []struct {
		name    string
		content string
		mode    fs.FileMode
		dir     bool
		want    string
	}{
		{"empty (truncated write)", "", 0o600, false, "not a WireGuard private key"},
		{"truncated", secret[:20], 0o600, false, "not a WireGuard private key"},
		{"31 bytes", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", 0o600, false, "not a WireGuard private key"},
		{"33 bytes", secret[:43] + "AAAA", 0o600, false, "not a WireGuard private key"},
		{"not base64", "-----BEGIN PRIVATE KEY-----\n" + secret + "\n", 0o600, false, "not a WireGuard private key"},
		{"two keys", secret + "\n" + secret + "\n", 0o600, false, "not a WireGuard private key"},
		{"huge", strings.Repeat(secret, 1000), 0o600, false, "too long"},
		{"all zeros", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 0o600, false, "all zeros"},
		{"a directory", "", 0, true, "not a regular file"},
		{"unreadable", secret + "\n", 0o000, false, "permission denied"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.mode == 0 && !tt.dir && os.Geteuid() == 0 {
				t.Skip("root reads a mode 000 file")
			}
			dir := t.TempDir()
			keyFile := filepath.Join(dir, KeyFileName)
			if tt.dir {
				os.Mkdir(keyFile, 0o700)
			} else if err := os.WriteFile(keyFile, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			var logs policytest.SyncBuffer
			srv := keyServer(t, dir, &logs, nil) // the default path, an empty registry
			checkErr := srv.CheckKey()
			runErr := runKeyServer(t, srv)
			for _, err := range []error{checkErr, runErr} {
				var ke *KeyError
				if !errors.As(err, &ke) || ke.Missing() {
					t.Fatalf("want a *KeyError, got %v", err)
				}
				for _, w := range []string{keyFile, tt.want, "never generated over", "restore the key file from backup", `"gatehouse vpn genkey --force"`, "re-enroll"} {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, err)
					}
				}
				if strings.Contains(err.Error(), secret[:16]) {
					t.Errorf("the error quotes the key file: %v", err)
				}
			}
			if tt.dir {
				return
			}
			if b, err := os.ReadFile(keyFile); err != nil || string(b) != tt.content {
				t.Fatalf("key file changed: %v", err)
			}
		})
	}
}

// A key file readable by group or others is used, with a WARN naming it
// and its mode; a 0600 one gives no warning.
func TestKeyFileModeWarning(t *testing.T) {
	for _, mode := range []fs.FileMode{0o600, 0o640, 0o644} {
		dir := t.TempDir()
		keyFile := filepath.Join(t.TempDir(), "wg.key")
		k := newKeyFile(t, keyFile)
		if err := os.Chmod(keyFile, mode); err != nil {
			t.Fatal(err)
		}
		var logs policytest.SyncBuffer
		srv := keyServer(t, dir, &logs, func(c *Config) { c.PrivateKeyFile = keyFile })
		if err := runKeyServer(t, srv); err != nil {
			t.Fatalf("%04o: %v", mode, err)
		}
		if srv.PublicKey() != k.Public() {
			t.Fatalf("%04o: not the file's key", mode)
		}
		out := logs.String()
		if mode == 0o600 {
			if strings.Contains(out, "readable by group or others") {
				t.Errorf("0600: warned:\n%s", out)
			}
		} else {
			for _, w := range []string{"level=WARN", "readable by group or others", "file=" + keyFile, "mode=" + modeOctal(mode)} {
				if !strings.Contains(out, w) {
					t.Errorf("%04o: the log lacks %q:\n%s", mode, w, out)
				}
			}
		}
		if strings.Contains(logs.String(), k.String()) {
			t.Error("the private key reached the log")
		}
	}
}

func modeOctal(m fs.FileMode) string {
	return "0" + string([]byte{'0' + byte(m>>6&7), '0' + byte(m>>3&7), '0' + byte(m&7)})
}

// WriteKeyFile (gatehouse vpn genkey) writes a fresh key, mode 0600, and
// replaces an existing one only when told to.
func TestWriteKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "wg.key")
	k1, err := WriteKeyFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	got, perm, err := ReadKeyFile(path)
	if err != nil || got != k1 || perm != 0o600 {
		t.Fatalf("read back: %v, mode %04o", err, perm)
	}
	if fi, _ := os.Stat(filepath.Dir(path)); fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v", fi.Mode())
	}
	if _, err := WriteKeyFile(path, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite without replace: %v", err)
	}
	if got, _, _ := ReadKeyFile(path); got != k1 {
		t.Fatal("key replaced without replace")
	}
	k2, err := WriteKeyFile(path, true)
	if err != nil || k2 == k1 {
		t.Fatalf("replace: %v", err)
	}
	if got, _, _ := ReadKeyFile(path); got != k2 {
		t.Fatal("key not replaced")
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("leftovers: %v", ents)
	}
}
