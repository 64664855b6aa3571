package pgstore

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// CountPeers implements vpn.PeerCounter: the site's rows, quarantined ones
// included (a node whose key file is missing asks whether clients hold
// the site's key). A database not migrated yet holds none. When the
// database cannot be reached, the local cache's count is returned; with
// no usable cache, the error (the caller cannot tell).
func (st *Store) CountPeers() (int, error) {
	ctx, cancel := st.ctx()
	defer cancel()
	var n int
	err := st.db.Pool().QueryRow(ctx, "SELECT count(*) FROM vpn_peers WHERE site = $1", st.cfg.Site).Scan(&n)
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return n, nil
	case errors.As(err, &pe) && pe.Code == "42P01": // undefined_table: a new database
		return 0, nil
	}
	err = wrap("count peers", err)
	cached, cerr := st.readCache()
	if cerr != nil {
		return 0, fmt.Errorf("%w (and no usable local cache: %v)", err, cerr)
	}
	st.log.Warn("pgstore: database unavailable: peers counted in the local cache", "err", err, "peers", len(cached), "cache", st.cfg.Cache)
	return len(cached), nil
}
