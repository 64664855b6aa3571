package policy

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// catFiles writes the concatenation of files from the test PKI (and extra
// text) into a temp file and returns its path.
func catFiles(t *testing.T, name string, parts ...string) string {
	t.Helper()
	var b []byte
	for _, p := range parts {
		if strings.HasPrefix(p, "text:") {
			b = append(b, p[len("text:"):]...)
			continue
		}
		data, err := os.ReadFile(pki + p)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, data...)
	}
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestCRLBundle: every CRL of a PEM bundle counts. carol's CRL is the 2nd
// block; with best_effort, reading only the first would let her in.
func TestCRLBundle(t *testing.T) {
	bundle := catFiles(t, "all.crl", "employee-root.crl", "employee-int.crl", "device-ca.crl", "long-int1.crl")
	cfg := testConfig()
	cfg.Trust.CRL = []string{bundle}
	cfg.Trust.Revocation = RevocationBestEffort
	p := mustCompile(t, cfg)
	if n := p.Summary().CRLs; n != 4 {
		t.Errorf("Summary().CRLs = %d, want 4", n)
	}
	d := p.Verify(loadChain(t, "carol.pem"))
	if d.Code != CodeRevoked {
		t.Fatalf("carol, CRL 2nd in the bundle: %v %q, want revoked", d.Code, d.Reason)
	}
	if d := p.Verify(loadChain(t, "alice.pem")); d.Code != CodeAllowed {
		t.Fatalf("alice: %v %q", d.Code, d.Reason)
	}
}

// TestPEMInputsStrict: no PEM input skips a block silently — CA files,
// intermediates, CRLs, the server chain and key.
func TestPEMInputsStrict(t *testing.T) {
	const garbage = "text:this is not PEM\n"
	const truncated = "text:-----BEGIN CERTIFICATE-----\nMIIBkTCCATegAwIBAgIRAP\n"
	const badBase64 = "text:-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n"
	tests := []struct {
		name string
		mod  func(t *testing.T, c *Config)
		want string
	}{
		{"key in CA file", func(t *testing.T, c *Config) {
			c.Trust.ClientCA[0] = catFiles(t, "ca.pem", "employee-root.pem", "employee-root.key")
		}, `trust.client_ca[0]: "` + "%s" + `": PEM block 2 is "PRIVATE KEY", want "CERTIFICATE"`},
		{"garbage after CA", func(t *testing.T, c *Config) {
			c.Trust.ClientCA[0] = catFiles(t, "ca.pem", "employee-root.pem", garbage)
		}, "trust.client_ca[0]: %q: unexpected data after PEM block 1"},
		{"truncated intermediate", func(t *testing.T, c *Config) {
			c.Trust.Intermediates[0] = catFiles(t, "int.pem", "employee-int.pem", truncated)
		}, "trust.intermediates[0]: %q: PEM block 2 is malformed or truncated"},
		{"bad block before a good one", func(t *testing.T, c *Config) {
			c.Trust.Intermediates[0] = catFiles(t, "int.pem", badBase64, "employee-int.pem")
		}, "trust.intermediates[0]: %q: PEM block 1 is malformed"},
		{"empty CA file", func(t *testing.T, c *Config) {
			c.Trust.ClientCA[1] = catFiles(t, "ca.pem", "text:\n")
		}, `trust.client_ca[1]: %q: no PEM block found (want "CERTIFICATE")`},
		{"certificate in CRL bundle", func(t *testing.T, c *Config) {
			c.Trust.CRL[1] = catFiles(t, "b.crl", "employee-int.crl", "alice.pem")
		}, `trust.crl[1]: %q: PEM block 2 is "CERTIFICATE", want "X509 CRL"`},
		{"garbage after CRL", func(t *testing.T, c *Config) {
			c.Trust.CRL[1] = catFiles(t, "b.crl", "employee-int.crl", garbage)
		}, "trust.crl[1]: %q: unexpected data after PEM block 1"},
		{"two DER CRLs", func(t *testing.T, c *Config) {
			c.Trust.CRL[1] = derCRLs(t, "employee-int.crl", "employee-root.crl")
		}, "trust.crl[1]: %q: "},
		{"foreign CRL in bundle", func(t *testing.T, c *Config) {
			c.Trust.ClientCA = []string{pki + "employee-root.pem"}
			c.Identity.Device = nil
			c.Trust.CRL = []string{catFiles(t, "b.crl", "employee-root.crl", "device-ca.crl")}
		}, "trust.crl[0]: %q: CRL 2 of 2: CRL issued by \"CN=Gatehouse Test Device CA"},
		{"key in server chain", func(t *testing.T, c *Config) {
			c.Trust.ServerCert = catFiles(t, "server.pem", "server.pem", "server.key")
		}, `trust.server_cert: %q: PEM block 3 is "PRIVATE KEY", want "CERTIFICATE"`},
		{"garbage after server chain", func(t *testing.T, c *Config) {
			c.Trust.ServerCert = catFiles(t, "server.pem", "server.pem", garbage)
		}, `trust.server_cert: %q: unexpected data after PEM block 2`},
		{"two server keys", func(t *testing.T, c *Config) {
			c.Trust.ServerKey = catFiles(t, "server.key", "server.key", "server.key")
		}, `trust.server_key: %q: holds 2 private keys, want one`},
		{"two CAs for a device rule", func(t *testing.T, c *Config) {
			c.Identity.Device[0].IssuerCA = catFiles(t, "dev.pem", "device-ca.pem", "employee-root.pem")
		}, `identity.device[0].issuer_ca: %q: holds 2 certificates; name one CA per entry`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.mod(t, c)
			_, err := Compile(c)
			if err == nil {
				t.Fatal("compiled")
			}
			// The one file the case made is the one the error must name.
			var file string
			files := append(append(append([]string{c.Trust.ServerCert, c.Trust.ServerKey}, c.Trust.ClientCA...), c.Trust.Intermediates...), c.Trust.CRL...)
			for _, d := range c.Identity.Device {
				files = append(files, d.IssuerCA)
			}
			for _, f := range files {
				if strings.HasPrefix(f, os.TempDir()) {
					file = f
				}
			}
			want := strings.ReplaceAll(tt.want, "%q", `"`+file+`"`)
			want = strings.ReplaceAll(want, "%s", file)
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, want)
			}
		})
	}
}

func TestReadPEMAllowsLeadingText(t *testing.T) {
	f := catFiles(t, "ca.pem", "text:subject=CN = Gatehouse Test Employee Root CA\nissuer=…\n", "employee-root.pem",
		"text:Bag Attributes\n", "employee-int.pem", "text:\n\n")
	certs, err := ReadCertificates(f)
	if err != nil || len(certs) != 2 {
		t.Fatalf("%d certificates, %v", len(certs), err)
	}
}

func FuzzDecodePEM(f *testing.F) {
	for _, p := range []string{"employee-root.pem", "alice-chain.pem", "employee-int.crl"} {
		b, err := os.ReadFile(pki + p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("x\n-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\ntrailing"))
	f.Fuzz(func(t *testing.T, b []byte) {
		blocks, err := decodePEM(b, pemCertificate, pemCRL)
		if err != nil {
			if len(blocks) != 0 {
				t.Fatal("blocks with an error")
			}
			return
		}
		if len(blocks) == 0 {
			t.Fatal("no block and no error")
		}
		// What was accepted re-encodes to the same blocks.
		var again []byte
		for _, blk := range blocks {
			again = append(again, pemEncode(blk)...)
		}
		blocks2, err := decodePEM(again, pemCertificate, pemCRL)
		if err != nil || len(blocks2) != len(blocks) {
			t.Fatalf("re-encoded: %d blocks, %v; want %d", len(blocks2), err, len(blocks))
		}
	})
}

func pemEncode(b *pem.Block) []byte { return pem.EncodeToMemory(b) }

// derCRLs writes the DER forms of PEM CRLs of the test PKI, concatenated.
func derCRLs(t *testing.T, names ...string) string {
	t.Helper()
	var der []byte
	for _, n := range names {
		b, err := os.ReadFile(pki + n)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		der = append(der, blk.Bytes...)
	}
	return writeTemp(t, "crls.der", der)
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestDERCRL(t *testing.T) {
	cfg := testConfig()
	cfg.Trust.CRL[1] = derCRLs(t, "employee-int.crl")
	if d := mustCompile(t, cfg).Verify(loadChain(t, "carol.pem")); d.Code != CodeRevoked {
		t.Fatalf("carol with a DER CRL: %v %q", d.Code, d.Reason)
	}
	cfg.Trust.CRL[1] = derCRLs(t, "employee-int.crl", "employee-root.crl")
	_, err := Compile(cfg)
	if err == nil || !strings.Contains(err.Error(), "unexpected data after the DER CRL") {
		t.Fatalf("two DER CRLs: %v", err)
	}
}
