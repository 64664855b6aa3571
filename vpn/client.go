package vpn

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/atomicfile"
)

// EnrollOptions configure Enroll (the `gatehouse enroll` command).
type EnrollOptions struct {
	// Server is the enrollment API's base URL, e.g. https://vpn.example.com:8443.
	Server string
	// CertFile and KeyFile are the client certificate (PEM, leaf first,
	// intermediates may follow) and its private key.
	CertFile, KeyFile string
	// CAFile, if set, is a PEM bundle of CAs that verify the server; else
	// the system roots are used.
	CAFile string
	// Output, if set, is where the wg-quick config is written (mode 0600,
	// atomically).
	Output string
	// HTTPClient overrides the client built from the files (tests).
	HTTPClient *http.Client
}

// Enroll generates a WireGuard key pair locally, enrolls its public key with
// the server over mutual TLS, and returns the complete wg-quick
// configuration, private key included, writing it to opts.Output if set.
// The private key never leaves this process except into that file.
func Enroll(ctx context.Context, opts EnrollOptions) (string, error) {
	hc := opts.HTTPClient
	if hc == nil {
		var err error
		if hc, err = enrollClient(opts); err != nil {
			return "", err
		}
	}
	priv, err := GenerateKey()
	if err != nil {
		return "", err
	}
	body, _ := json.Marshal(EnrollRequest{PublicKey: priv.Public().String()})
	url := strings.TrimSuffix(opts.Server, "/") + "/v1/enroll"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("vpn: enroll: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("vpn: enroll: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("vpn: enroll: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e ErrorResponse
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return "", &EnrollError{Status: resp.StatusCode, Message: e.Error}
		}
		return "", &EnrollError{Status: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
	}
	var er EnrollResponse
	if err := json.Unmarshal(b, &er); err != nil {
		return "", fmt.Errorf("vpn: enroll: bad response: %w", err)
	}
	conf, err := withPrivateKey(er.Config, priv)
	if err != nil {
		return "", err
	}
	if opts.Output != "" {
		if err := atomicfile.Write(opts.Output, []byte(conf), 0o600); err != nil {
			return "", fmt.Errorf("vpn: enroll: write config: %w", err)
		}
	}
	return conf, nil
}

// EnrollError is the server's refusal, with the message for the employee.
type EnrollError struct {
	Status  int
	Message string
}

func (e *EnrollError) Error() string {
	return fmt.Sprintf("vpn: enroll: refused (%d): %s", e.Status, e.Message)
}

// withPrivateKey inserts the PrivateKey line at the top of [Interface].
func withPrivateKey(conf string, k Key) (string, error) {
	i := strings.Index(conf, "[Interface]\n")
	if i < 0 {
		return "", errors.New("vpn: enroll: bad response: config has no [Interface] section")
	}
	i += len("[Interface]\n")
	return conf[:i] + "PrivateKey = " + k.String() + "\n" + conf[i:], nil
}

func enrollClient(opts EnrollOptions) (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("vpn: enroll: client certificate: %w", err)
	}
	// Always present the certificate, even when it does not chain to one of
	// the CAs the server names in its request (the Go default then sends
	// none, and the user would read "tls: certificate required"): the server
	// decides, and answers with a message the user can act on.
	tc := &tls.Config{
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		MinVersion:           tls.VersionTLS12,
	}
	if opts.CAFile != "" {
		// Strict: a block that is not a certificate is an error, not skipped.
		cas, err := policy.ReadCertificates(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("vpn: enroll: CA: %s: %w", opts.CAFile, err)
		}
		pool := x509.NewCertPool()
		for _, c := range cas {
			pool.AddCert(c)
		}
		tc.RootCAs = pool
	}
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true},
	}, nil
}
