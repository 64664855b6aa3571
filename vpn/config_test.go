package vpn

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func validConfig() Config {
	return Config{Enabled: true, Endpoint: "vpn.example.com:51820", AddressPool: "100.96.0.0/16", StateDir: "/var/lib/gatehouse"}
}

func TestConfigValidate(t *testing.T) {
	s, err := func() (*settings, error) { c := validConfig(); return c.validate() }()
	if err != nil {
		t.Fatal(err)
	}
	if s.Interface != "gh0" || s.ListenPort != 51820 || s.EnrollListen != ":8443" || s.PersistentKeepalive != 25 ||
		s.MaxPeersPerIdentity != 3 || s.revalidate != time.Minute || s.MTU != 1420 || s.gateway.String() != "100.96.0.1" {
		t.Errorf("defaults: %+v", s)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		err    string
	}{
		{"disabled", func(c *Config) { c.Enabled = false }, "not enabled"},
		{"no endpoint", func(c *Config) { c.Endpoint = "" }, "endpoint"},
		{"endpoint without port", func(c *Config) { c.Endpoint = "vpn.example.com" }, "endpoint"},
		{"no pool", func(c *Config) { c.AddressPool = "" }, "address_pool"},
		{"v6 pool as v4", func(c *Config) { c.AddressPool = "fd00::/64" }, "address_pool"},
		{"pool too small", func(c *Config) { c.AddressPool = "10.0.0.0/31" }, "too small"},
		{"bad pool6", func(c *Config) { c.AddressPool6 = "10.0.0.0/8" }, "address_pool6"},
		{"pool6 smaller", func(c *Config) { c.AddressPool6 = "fd00::/120" }, "smaller"},
		{"bad dns", func(c *Config) { c.DNS = []string{"dns.example.com"} }, "dns"},
		{"bad port", func(c *Config) { c.ListenPort = 70000 }, "listen_port"},
		{"no state dir", func(c *Config) { c.StateDir = "" }, "state directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mutate(&c)
			_, err := c.validate()
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "vpn: config: ") {
				t.Fatalf("got %v, want error about %q", err, tc.err)
			}
		})
	}
}

// fixedKey returns a deterministic key for golden files.
func fixedKey(b byte) Key {
	var k Key
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

func TestClientConfigGolden(t *testing.T) {
	c := validConfig()
	c.AddressPool6 = "fd7a:6761::/64"
	c.DNS = []string{"10.0.0.53"}
	s, err := New(c, &fakeAuth{}, nil, nil)
	if err == nil {
		t.Fatal("New accepted a nil TLS config")
	}
	st, _ := c.validate()
	s = &Server{cfg: st, pubKey: fixedKey(1)}
	p := newPool(st.pool, st.pool6)
	a4, a6 := p.addrs(0x102)
	r := &record{
		Identity: "alice@corp.example.com", Rule: "engineering", NotAfter: time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC),
		Address: a4, Address6: a6, Access: engineeringAccess,
	}
	conf := s.clientConfig(r)
	golden(t, "client.conf.golden", conf) // the server's answer: no private key
	full, err := withPrivateKey(conf, fixedKey(2))
	if err != nil {
		t.Fatal(err)
	}
	if want := "[Interface]\nPrivateKey = " + fixedKey(2).String() + "\nAddress = "; !strings.Contains(full, want) {
		t.Errorf("withPrivateKey:\n%s", full)
	}

	r.Access = &policy.VPNAccess{FullTunnel: true, DNS: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}
	golden(t, "client-full-tunnel.conf.golden", s.clientConfig(r))
}

func TestUAPIGolden(t *testing.T) {
	var w uapiWriter
	w.privateKey(fixedKey(3))
	if got := w.String(); got != "private_key="+fixedKey(3).hex()+"\n" {
		t.Fatalf("private key line %q", got)
	}
	w = uapiWriter{} // keep keys, even test ones, out of golden files
	w.listenPort(51820)
	w.replacePeers()
	w.addPeer(fixedKey(4), netip.MustParseAddr("100.96.0.2"), netip.MustParseAddr("fd7a:6761::2"))
	w.removePeer(fixedKey(5))
	golden(t, "uapi.golden", w.String())
}
