package radius

import (
	"context"
	"crypto"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

type eapolCase struct {
	name     string
	cert     string // key into the PEM files written by writeClientPEMs
	tls13    bool
	frag     int
	secret   string
	accept   bool
	noAnswer bool
	vlan     string
	env      []string // extra environment for eapol_test
	reauth   int      // eapol_test -r: re-authentications (TLS resumption)
	mtu      int      // Framed-MTU sent (eapol_test's default is 1400)
	identity string   // EAP identity; default "anonymous@example.com"
}

// writeClientPEMs writes the test PKI for eapol_test.
func writeClientPEMs(t *testing.T, p *testPKI) (dir string) {
	dir = t.TempDir()
	writePEM(t, dir, "ca", [][]byte{p.serverCA.Raw}, nil)
	for name, c := range map[string]*tls.Certificate{
		"alice": &p.alice, "thermostat": &p.thermostat, "erin": &p.erin, "mallory": &p.mallory, "frank": &p.frank,
		"dave": &p.dave, "noeku": &p.noeku,
	} {
		writePEM(t, dir, name, c.Certificate, c.PrivateKey.(crypto.Signer))
	}
	return dir
}

func runEAPOLTest(t *testing.T, bin, dir, addr string, tc eapolCase) (string, error) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		host, port = addr[:i], addr[i+1:]
	}
	phase1 := "tls_disable_tlsv1_3=1"
	if tc.reauth > 0 {
		// wpa_supplicant disables TLS 1.2 session tickets for EAP by
		// default, and crypto/tls resumes only from tickets.
		phase1 += " tls_disable_session_ticket=0"
	}
	if tc.tls13 {
		phase1 = "tls_disable_tlsv1_3=0"
	}
	frag := ""
	if tc.frag > 0 {
		frag = fmt.Sprintf("\tfragment_size=%d\n", tc.frag)
	}
	identity := tc.identity
	if identity == "" {
		identity = "anonymous@example.com"
	}
	conf := fmt.Sprintf(`network={
	ssid="gatehouse"
	key_mgmt=WPA-EAP
	eap=TLS
	identity="%[5]s"
	ca_cert="%[1]s/ca.pem"
	domain_suffix_match="gatehouse.test"
	client_cert="%[1]s/%[2]s.pem"
	private_key="%[1]s/%[2]s.key"
	phase1="%[3]s"
%[4]s	eapol_flags=0
}
`, dir, tc.cert, phase1, frag, identity)
	cf := filepath.Join(t.TempDir(), "eapol.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	timeout := "10"
	if tc.noAnswer {
		timeout = "3"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := []string{"-c", cf, "-a", host, "-p", port, "-s", tc.secret, "-t", timeout, "-r", fmt.Sprint(tc.reauth)}
	if tc.mtu > 0 {
		args = append(args, fmt.Sprintf("-N12:d:%d", tc.mtu))
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), tc.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var (
	reMPPE    = regexp.MustCompile(`MPPE keys OK: (\d+)\s+mismatch: (\d+)`)
	reMSK     = regexp.MustCompile(`EAP-TLS: Derived key - hexdump\(len=64\):((?: [0-9a-f]{2})+)`)
	reSendKey = regexp.MustCompile(`MS-MPPE-Send-Key \(sign\) - hexdump\(len=32\):((?: [0-9a-f]{2})+)`)
	reRecvKey = regexp.MustCompile(`MS-MPPE-Recv-Key \(crypt\) - hexdump\(len=32\):((?: [0-9a-f]{2})+)`)
	reAttr    = regexp.MustCompile(`Attribute (\d+) \(([^)]*)\) length=(\d+)`)
)

func TestEAPOLTestInterop(t *testing.T) {
	bin := requireTool(t, "eapol_test")
	s := startServer(t, nil)
	small := startServer(t, func(c *Config) { c.FragmentSize = 300 })
	dir := writeClientPEMs(t, s.pki)
	tests := []eapolCase{
		{name: "user tls1.2", cert: "alice", secret: testSecret, accept: true, vlan: "10"},
		{name: "user tls1.3", cert: "alice", tls13: true, secret: testSecret, accept: true, vlan: "10"},
		{name: "device tls1.2", cert: "thermostat", secret: testSecret, accept: true, vlan: "30"},
		{name: "device tls1.3", cert: "thermostat", tls13: true, secret: testSecret, accept: true, vlan: "30"},
		{name: "reauth resumes tls1.2", cert: "alice", secret: testSecret, accept: true, vlan: "10", reauth: 2},
		{name: "reauth resumes tls1.3", cert: "alice", tls13: true, secret: testSecret, accept: true, vlan: "10", reauth: 2},
		{name: "long chain tls1.2", cert: "erin", secret: testSecret, accept: true, vlan: "10"},
		{name: "long chain tls1.3 fragment_size=300", cert: "erin", tls13: true, frag: 300, secret: testSecret, accept: true, vlan: "10"},
		{name: "untrusted tls1.2", cert: "mallory", secret: testSecret},
		{name: "untrusted tls1.3", cert: "mallory", tls13: true, secret: testSecret},
		{name: "no rule tls1.3", cert: "frank", tls13: true, secret: testSecret},
		{name: "expired tls1.2", cert: "dave", secret: testSecret},
		{name: "no clientAuth EKU tls1.3", cert: "noeku", tls13: true, secret: testSecret},
		{name: "wrong secret", cert: "alice", secret: "not-the-secret", noAnswer: true},
		// OpenSSL told not to offer Extended Master Secret: refused.
		{name: "tls1.2 without EMS", cert: "alice", secret: testSecret, env: []string{"OPENSSL_CONF=" + noEMSConf(t)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := s
			if tc.frag > 0 {
				srv = small
			}
			calls0 := srv.auth.calls.Load()
			out, err := runEAPOLTest(t, bin, dir, srv.Addr().String(), tc)
			if tc.reauth > 0 {
				// Resumed, and authorized again every time.
				if n := strings.Count(out, "Handshake finished - resumed=1"); n < tc.reauth {
					t.Errorf("%d resumed handshakes, want %d", n, tc.reauth)
				}
				if n := srv.auth.calls.Load() - calls0; n != int64(1+tc.reauth) {
					t.Errorf("Authorize called %d times, want %d", n, 1+tc.reauth)
				}
			}
			defer func() {
				if t.Failed() || os.Getenv("GATEHOUSE_TEST_LOG") != "" {
					t.Log(out)
				}
			}()
			switch {
			case tc.noAnswer:
				if err == nil || strings.Contains(out, "Received RADIUS packet") {
					t.Errorf("server answered with a wrong secret")
				}
				return
			case !tc.accept:
				if err == nil || !strings.Contains(out, "CTRL-EVENT-EAP-FAILURE") {
					t.Errorf("want EAP-Failure, err %v", err)
				}
				return
			}
			if err != nil || !strings.Contains(out, "SUCCESS") {
				t.Fatalf("eapol_test failed: %v", err)
			}
			m := reMPPE.FindStringSubmatch(out)
			if m == nil || m[1] != fmt.Sprint(1+tc.reauth) || m[2] != "0" {
				t.Errorf("MPPE keys: %v", m)
			}
			// eapol_test compares only the Recv-Key with its MSK; check
			// both halves: Recv = MSK[0:32], Send = MSK[32:64].
			msk, send, recv := lastHex(reMSK, out), lastHex(reSendKey, out), lastHex(reRecvKey, out)
			if len(msk) != 64*3 || recv != msk[:32*3] || send != msk[32*3:] {
				t.Errorf("MPPE keys do not split the MSK as Recv=MSK[0:32], Send=MSK[32:64]")
			}
			wantVer := "TLSv1.2"
			if tc.tls13 {
				wantVer = "TLSv1.3"
			}
			if !strings.Contains(out, "Using TLS version "+wantVer) {
				t.Errorf("eapol_test did not use %s", wantVer)
			}
			attrs := map[string]bool{}
			for _, a := range reAttr.FindAllStringSubmatch(out, -1) {
				attrs[a[1]] = true
			}
			want := []string{"64", "65", "81", "26", "1"}
			if tc.cert != "thermostat" {
				want = append(want, "27") // Session-Timeout from the rule
			}
			for _, want := range want {
				if !attrs[want] {
					t.Errorf("attribute %s missing from the Access-Accept", want)
				}
			}
		})
	}
}

// lastHex returns the last match's hex dump (" aa bb ...").
func lastHex(re *regexp.Regexp, out string) string {
	m := re.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1]
}

// noEMSConf writes an OpenSSL configuration that disables the Extended
// Master Secret extension (RFC 7627) for every TLS context.
func noEMSConf(t *testing.T) string {
	f := filepath.Join(t.TempDir(), "no-ems.cnf")
	conf := "openssl_conf = default_conf\n[default_conf]\nssl_conf = ssl_sect\n[ssl_sect]\nsystem_default = sys\n[sys]\nOptions = -ExtendedMasterSecret\n"
	if err := os.WriteFile(f, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func requireTool(t *testing.T, name string) string {
	t.Helper()
	return policytest.RequireTool(t, name)
}
