package main

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/gatehouse/gatehouse/store/postgres"
	"github.com/gatehouse/gatehouse/vpn"
	"github.com/gatehouse/gatehouse/vpn/pgstore"
)

// The VPN registry on PostgreSQL ([store] backend = "postgres").
//
// Every node of a site keeps the whole registry in memory and on its
// WireGuard device, as with the file backend; the database is the lease
// authority and the channel between the nodes (vpn/pgstore). What a node
// needs locally is its state_dir: vpn/registry-cache-<site>.jsonl is the
// last registry it read from the database, so a node (re)started while
// PostgreSQL is down still configures every peer it knew; enrollment is
// then refused (503) until the database answers, and /readyz says so.
//
// Start-up: the schema is migrated (advisory lock: several nodes may start
// at once); if PostgreSQL is down the node logs an ERROR and starts
// anyway — the follower retries the migration on every reconnect.

// storeMigrateAtStart bounds the migration attempt before the doors start.
const storeMigrateAtStart = 15 * time.Second

// openSharedDB opens the [store] pool once per process (nil for the file
// backend); both doors' stores use it.
func (s *servers) openSharedDB(l *loaded, logger *slog.Logger) (*postgres.DB, error) {
	if s.db != nil || l.cfg.Store.Backend != "postgres" {
		return s.db, nil
	}
	db, err := openStore(l, logger.With("component", "store"))
	if err != nil {
		return nil, err
	}
	s.db = db
	return db, nil
}

// attachVPNStore puts the VPN registry on PostgreSQL when [store] says so.
func (s *servers) attachVPNStore(l *loaded, logger *slog.Logger) error {
	if s.vpn == nil || l.cfg.Store.Backend != "postgres" {
		return nil
	}
	db, err := s.openSharedDB(l, logger)
	if err != nil {
		return err
	}
	c := l.cfg.Store
	c.defaults()
	st := pgstore.New(db, pgstore.Config{
		Site:        c.Site,
		Node:        c.Node,
		Cache:       filepath.Join(l.cfg.Server.StateDir, "vpn", "registry-cache-"+c.Site+".jsonl"),
		ResyncEvery: c.ResyncEvery.Duration,
	}, logger.With("component", "vpn-store"))
	s.vpn.SetStore(st)
	s.vpn.SetLeader(st.Revalidates)
	s.vpnStore = st
	return nil
}

// migrateAtStart applies the schema before the doors start; an outage is
// logged and ridden out.
func (s *servers) migrateAtStart(ctx context.Context, logger *slog.Logger) {
	if s.db == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, storeMigrateAtStart)
	defer cancel()
	ms, err := s.db.Migrate(ctx)
	if errors.Is(err, postgres.ErrIncompatibleSchema) {
		logger.Error("store: the PostgreSQL schema is incompatible with this binary: upgrade gatehouse on this node; meanwhile Wi-Fi logins and cached VPN peers are served, enrollment is refused",
			"err", err)
		return
	}
	if err != nil {
		logger.Error("store: PostgreSQL unavailable at start: Wi-Fi logins and cached VPN peers are served; enrollment is refused until it answers (retrying in the background)",
			"err", err)
		return
	}
	logger.Info("store: PostgreSQL schema ready", "applied", len(ms))
}

// runVPNStore follows the shared registry once the VPN is up.
func (s *servers) runVPNStore(ctx context.Context) error {
	if s.vpnStore == nil {
		return nil
	}
	select {
	case <-s.vpn.Ready():
	case <-ctx.Done():
		return nil
	}
	return s.vpnStore.Run(ctx, s.vpn)
}

// storeReady is the /readyz "store" line: a database outage degrades the
// node (it still serves Wi-Fi and connected VPN peers: draining it from a
// load balancer would cut them) rather than making it unready.
func storeReady(s *servers) (err error, ok bool) {
	if s.vpnStore == nil {
		return nil, false
	}
	if err := s.vpnStore.Available(); err != nil {
		return &degradedError{"unavailable — Wi-Fi logins and connected VPN peers keep working; VPN enrollment is refused until it returns"}, true
	}
	return nil, true
}

// sharedPGStore opens the VPN registry of a postgres configuration for a
// command (peers, peers remove); nil for the file backend.
func sharedPGStore(l *loaded) (*pgstore.Store, func(), error) {
	if l.cfg.Store.Backend != "postgres" {
		return nil, func() {}, nil
	}
	db, err := openStore(l, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, nil, err
	}
	c := l.cfg.Store
	c.defaults()
	return pgstore.New(db, pgstore.Config{Site: c.Site, Node: c.Node}, nil), db.Close, nil
}

// listPeers lists the registry the configuration names, joined with the
// local device.
func listPeers(ctx context.Context, l *loaded, sock string) (*vpn.Listing, error) {
	st, done, err := sharedPGStore(l)
	if err != nil {
		return nil, err
	}
	defer done()
	if st == nil {
		return vpn.ListPeers(ctx, vpnConfig(&l.cfg).StateDir, sock)
	}
	recs, bad, err := st.Load()
	if err != nil {
		return nil, err
	}
	return vpn.ListRecords(ctx, recs, bad, sock), nil
}

// removeStoredPeers removes peers when no server runs: from the shared
// registry (the other nodes apply it at once) or from state_dir.
func removeStoredPeers(cfgFile, dir, match string) ([]string, error) {
	l, err := loadConfig(cfgFile)
	if err != nil {
		return nil, err
	}
	st, done, err := sharedPGStore(l)
	if err != nil {
		return nil, err
	}
	defer done()
	if st == nil {
		return vpn.RemoveStoredPeers(filepath.Join(dir, "vpn"), match)
	}
	return vpn.RemoveFromStore(st, match)
}
