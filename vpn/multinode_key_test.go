package vpn_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/vpn"
	"github.com/gatehouse/gatehouse/vpn/pgstore"
)

// A node joining a site whose PostgreSQL registry holds peers does not
// come up with a key of its own when its key file is missing: with the
// state_dir default, because peers are enrolled; with the site's
// private_key_file, always. Given the site's key file, it starts with the
// site's public key.
func TestNodeWithMissingKeyRefusedOnSharedRegistry(t *testing.T) {
	ca := vpn.NewTestCA(t)
	auth := &vpn.FakeAuth{}
	auth.Allow("alice")
	s := newSite(t, auth, ca)
	a := s.start(t, "a", t.TempDir(), 0, true)
	if _, err := a.env.Enroll(ca.Client(t, "alice")); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name    string
		keyFile string // "" = the state_dir default
	}{
		{"state_dir default", ""},
		{"private_key_file not mounted", filepath.Join(t.TempDir(), "mnt", "site-wg.key")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			srv, err := vpn.New(vpn.Config{Enabled: true, ListenPort: 0, Endpoint: "127.0.0.1:1", AddressPool: "100.96.0.0/24",
				EnrollListen: "127.0.0.1:0", StateDir: dir, UseNetstack: true, PrivateKeyFile: tt.keyFile,
				RevalidateEvery: policy.Duration{Duration: time.Hour}}, auth, &tls.Config{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			srv.SetStore(pgstore.New(s.open(t), pgstore.Config{Site: "hq", Node: "b", OpTimeout: 5 * time.Second}, nil))
			want := filepath.Join(dir, vpn.KeyFileName)
			if tt.keyFile != "" {
				want = tt.keyFile
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for what, err := range map[string]error{"CheckKey": srv.CheckKey(), "Run": srv.Run(ctx)} {
				var ke *vpn.KeyError
				if !errors.As(err, &ke) || !ke.Missing() || ke.Peers != 1 || ke.Path != want ||
					!strings.Contains(err.Error(), "1 enrolled peer (active or suspended)") {
					t.Fatalf("%s: want the missing key %s refused with 1 enrolled peer, got %v", what, want, err)
				}
			}
			if _, err := os.Stat(want); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a key was written: %v", err)
			}
		})
	}

	// With the site's key file, node B comes up with the site's key.
	b := s.start(t, "b", t.TempDir(), 0, true)
	if b.env.Server().PublicKey() != a.env.Server().PublicKey() {
		t.Fatal("node B's key differs from the site's")
	}
}
