package policy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"os"
	"slices"
	"strings"
)

// PEM block types.
const (
	pemCertificate = "CERTIFICATE"
	pemCRL         = "X509 CRL"
)

// ReadPEM reads every PEM block of file and checks that each has one of the
// given types. Nothing is skipped silently: a block of another type, a block
// that does not decode (e.g. truncated or with bad base64), data after the
// last block, and a file with no block at all are errors. Text before a
// block (OpenSSL writes "subject=…" or "Bag Attributes" there) is allowed
// when it holds no PEM boundary line.
func ReadPEM(file string, types ...string) ([]*pem.Block, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return decodePEM(b, types...)
}

// decodePEM is ReadPEM on data already read.
func decodePEM(b []byte, types ...string) ([]*pem.Block, error) {
	var blocks []*pem.Block
	rest := b
	for {
		blk, after := pem.Decode(rest)
		if blk == nil {
			break
		}
		skipped := rest[:len(rest)-len(after)]
		// pem.Decode skips whatever precedes the block it returns,
		// including blocks it could not decode: refuse those.
		if i := bytes.Index(skipped, []byte("-----BEGIN ")); i >= 0 {
			if j := bytes.Index(skipped[i+1:], []byte("-----BEGIN ")); j >= 0 || bytes.Contains(skipped[:i], []byte("-----END ")) {
				return nil, fmt.Errorf("PEM block %d is malformed", len(blocks)+1)
			}
		}
		n := len(blocks) + 1
		if !slices.Contains(types, blk.Type) {
			return nil, fmt.Errorf("PEM block %d is %q, want %s", n, blk.Type, quoteList(types))
		}
		blocks = append(blocks, blk)
		rest = after
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		if bytes.Contains(rest, []byte("-----BEGIN ")) {
			return nil, fmt.Errorf("PEM block %d is malformed or truncated", len(blocks)+1)
		}
		if len(blocks) == 0 {
			return nil, fmt.Errorf("no PEM block found (want %s)", quoteList(types))
		}
		return nil, fmt.Errorf("unexpected data after PEM block %d", len(blocks))
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("no PEM block found (want %s)", quoteList(types))
	}
	return blocks, nil
}

func quoteList(types []string) string {
	q := make([]string, len(types))
	for i, t := range types {
		q[i] = fmt.Sprintf("%q", t)
	}
	return strings.Join(q, " or ")
}

// ReadCertificates reads every certificate of a PEM file, in file order
// (for a client's file: leaf first). Any other block, a certificate that
// does not parse, trailing data and an empty file are errors (see ReadPEM).
func ReadCertificates(file string) ([]*x509.Certificate, error) {
	blocks, err := ReadPEM(file, pemCertificate)
	if err != nil {
		return nil, err
	}
	certs := make([]*x509.Certificate, 0, len(blocks))
	for i, blk := range blocks {
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i+1, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// readOneCertificate reads a PEM file that must hold exactly one
// certificate (a CA named by a device rule or a CA source).
func readOneCertificate(file string) (*x509.Certificate, error) {
	certs, err := ReadCertificates(file)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("holds %d certificates; name one CA per entry", len(certs))
	}
	return certs[0], nil
}

// readCRLs reads every CRL of a file: PEM "X509 CRL" blocks (a bundle may
// hold several), or one DER CRL.
func readCRLs(file string) ([]*x509.RevocationList, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	ders, err := crlDERs(b)
	if err != nil {
		return nil, err
	}
	out := make([]*x509.RevocationList, 0, len(ders))
	for i, der := range ders {
		l, err := x509.ParseRevocationList(der)
		if err != nil {
			if len(ders) > 1 {
				return nil, fmt.Errorf("CRL %d: %w", i+1, err)
			}
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// crlDERs returns the DER CRLs in b: the blocks of a PEM file (strictly, see
// ReadPEM), or b itself when it holds no PEM at all. Data after a DER CRL is
// an error (x509.ParseRevocationList ignores it, which would hide a second
// CRL concatenated in DER).
func crlDERs(b []byte) ([][]byte, error) {
	if !bytes.Contains(b, []byte("-----BEGIN ")) {
		if err := oneDER(b); err != nil {
			return nil, err
		}
		return [][]byte{b}, nil
	}
	blocks, err := decodePEM(b, pemCRL)
	if err != nil {
		return nil, err
	}
	ders := make([][]byte, len(blocks))
	for i, blk := range blocks {
		if err := oneDER(blk.Bytes); err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", i+1, err)
		}
		ders[i] = blk.Bytes
	}
	return ders, nil
}

// oneDER checks that b is exactly one DER element.
func oneDER(b []byte) error {
	var v asn1.RawValue
	rest, err := asn1.Unmarshal(b, &v)
	switch {
	case err != nil:
		return fmt.Errorf("not a DER CRL: %w", err)
	case len(rest) > 0:
		return fmt.Errorf("%d bytes of unexpected data after the DER CRL", len(rest))
	}
	return nil
}

// loadKeyPair is tls.LoadX509KeyPair with strict PEM reading: the
// certificate file holds only certificates (leaf first, then its chain),
// the key file exactly one private key. inKey tells whether an error is
// about the key file (else the certificate file). Errors never quote key
// material.
func loadKeyPair(certFile, keyFile string) (pair tls.Certificate, inKey bool, err error) {
	certs, err := ReadPEM(certFile, pemCertificate)
	if err != nil {
		return tls.Certificate{}, false, err
	}
	var certPEM []byte
	for i, c := range certs {
		if _, err := x509.ParseCertificate(c.Bytes); err != nil {
			return tls.Certificate{}, false, fmt.Errorf("certificate %d: %w", i+1, err)
		}
		certPEM = append(certPEM, pem.EncodeToMemory(c)...)
	}
	keys, err := ReadPEM(keyFile, "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")
	if err != nil {
		return tls.Certificate{}, true, err
	}
	if len(keys) != 1 {
		return tls.Certificate{}, true, fmt.Errorf("holds %d private keys, want one", len(keys))
	}
	pair, err = tls.X509KeyPair(certPEM, pem.EncodeToMemory(keys[0]))
	return pair, true, err
}
