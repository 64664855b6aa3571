package revocation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/atomicfile"
)

// clockSkew is how far a CRL's or OCSP response's thisUpdate may lie in the
// future.
const clockSkew = 5 * time.Minute

var (
	errNoStateDir = errors.New("no state directory")
	errNotOnDisk  = errors.New("no disk copy")
)

// fetchCRL downloads src's CRL and verifies it against src.CA: signature,
// issuer name, and dates (not expired, not from the future).
func (c *Checker) fetchCRL(ctx context.Context, src policy.RevocationSource, now time.Time) (*policy.CRL, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.CRLURL, nil)
	if err != nil {
		return nil, fmt.Errorf("revocation: CRL %s: %w", src.CRLURL, err)
	}
	req.Header.Set("Accept", "application/pkix-crl, application/x-pkcs7-crl;q=0.5, */*;q=0.1")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("revocation: CRL: %w", err) // *url.Error names the URL
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("revocation: CRL %s: HTTP %s", src.CRLURL, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxCRLSize+1))
	if err != nil {
		return nil, fmt.Errorf("revocation: CRL %s: %w", src.CRLURL, err)
	}
	if int64(len(b)) > c.cfg.MaxCRLSize {
		return nil, fmt.Errorf("revocation: CRL %s: larger than %d bytes", src.CRLURL, c.cfg.MaxCRLSize)
	}
	l, err := policy.ParseCRL(b, src.CA, fetchedSource(src.CRLURL, now))
	if err != nil {
		return nil, fmt.Errorf("revocation: CRL %s: %w", src.CRLURL, err)
	}
	if err := checkCRLDates(l, now); err != nil {
		return nil, fmt.Errorf("revocation: CRL %s: %w", src.CRLURL, err)
	}
	return l, nil
}

func fetchedSource(url string, at time.Time) string {
	return url + " (fetched " + at.UTC().Format(time.RFC3339) + ")"
}

func checkCRLDates(l *policy.CRL, now time.Time) error {
	if l.ThisUpdate.After(now.Add(clockSkew)) {
		return fmt.Errorf("CRL is not valid yet (thisUpdate %s)", l.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if !l.NextUpdate.IsZero() && now.After(l.NextUpdate) {
		return fmt.Errorf("CRL expired (nextUpdate %s)", l.NextUpdate.UTC().Format(time.RFC3339))
	}
	return nil
}

// diskName is the file that keeps src's CRL: one per CA and URL.
func (c *Checker) diskName(src policy.RevocationSource) string {
	ca := sha256.Sum256(src.CA.Raw)
	u := sha256.Sum256([]byte(src.CRLURL))
	return filepath.Join(c.cfg.StateDir, "crl-"+hex.EncodeToString(ca[:8])+"-"+hex.EncodeToString(u[:8])+".der")
}

// loadDisk reads the disk copy of src's CRL, verified against src.CA. An
// expired copy is returned too: it still lists what it revoked, and the
// trust step reports it as expired.
func (c *Checker) loadDisk(src policy.RevocationSource) (*policy.CRL, error) {
	if c.cfg.StateDir == "" {
		return nil, errNoStateDir
	}
	name := c.diskName(src)
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNotOnDisk
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > c.cfg.MaxCRLSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, c.cfg.MaxCRLSize)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	l, err := policy.ParseCRL(b, src.CA, fetchedSource(src.CRLURL, fi.ModTime()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return l, nil
}

// saveDisk keeps l on disk: written to a temporary file, synced, renamed
// over the old copy, and the directory synced. When l has the same content
// as cur, only the file's time (the "fetched" time) is updated.
func (c *Checker) saveDisk(src policy.RevocationSource, l, cur *policy.CRL) error {
	if c.cfg.StateDir == "" {
		return nil
	}
	name := c.diskName(src)
	if cur != nil && sameCRL(l, cur) {
		now := time.Now()
		if err := os.Chtimes(name, now, now); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return writeAtomic(name, l.Raw)
}

// writeAtomic replaces the cached CRL name (mode 0600), creating its
// directory if need be.
func writeAtomic(name string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o750); err != nil {
		return err
	}
	return atomicfile.Write(name, b, 0o600)
}
