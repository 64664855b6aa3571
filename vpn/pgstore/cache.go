package pgstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gatehouse/gatehouse/policy/atomicfile"
	"github.com/gatehouse/gatehouse/vpn"
)

// The cache is one file: a header line, then one encoded record per line,
// written atomically (temporary file, fsync, rename, fsync of the
// directory). It is what this node last read from the database: Load falls
// back to it during an outage, so a restart then still configures every
// peer. It is rewritten after a resync that saw changes, at most every
// CacheEvery, and at shutdown.

const cacheHeader = "gatehouse vpn registry cache 1"

func (st *Store) writeCacheIfChanged(gen int64, recs []*vpn.PeerRecord) {
	if st.cfg.Cache == "" {
		return
	}
	st.cacheMu.Lock()
	defer st.cacheMu.Unlock()
	if st.cacheWritten && (st.cacheGen == gen || time.Since(st.cacheAt) < st.cfg.CacheEvery) {
		return
	}
	if err := writeCache(st.cfg.Cache, st.cfg.Site, recs); err != nil {
		st.log.Error("pgstore: local registry cache not written", "cache", st.cfg.Cache, "err", err)
		return
	}
	st.cacheGen, st.cacheWritten, st.cacheAt = gen, true, time.Now()
}

func writeCache(path, site string, recs []*vpn.PeerRecord) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s site=%s\n", cacheHeader, site)
	for _, r := range recs {
		e, err := vpn.EncodeRecord(r)
		if err != nil {
			return err
		}
		b.Write(e)
		b.WriteByte('\n')
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, b.Bytes(), 0o600)
}

// readCache returns the cached records of this site.
func (st *Store) readCache() ([]*vpn.PeerRecord, error) {
	if st.cfg.Cache == "" {
		return nil, errors.New("no cache configured")
	}
	f, err := os.Open(st.cfg.Cache)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	if !sc.Scan() || sc.Text() != cacheHeader+" site="+st.cfg.Site {
		return nil, fmt.Errorf("%s: not a registry cache of site %q", st.cfg.Cache, st.cfg.Site)
	}
	var recs []*vpn.PeerRecord
	for sc.Scan() {
		r, err := vpn.DecodeRecord(sc.Bytes())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", st.cfg.Cache, err)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", st.cfg.Cache, err)
	}
	return recs, nil
}
