-- gatehouse schema 2: incremental resync of the VPN registry.
-- compatible-from: 1
--
-- Every insert or update of vpn_peers stamps the row (trigger) with
--   rev      a number from the sequence vpn_peers_rev_seq: the row's revision;
--   rev_xid  the writing transaction's id (xid8: 64 bits, never wraps).
-- Every delete leaves a tombstone in vpn_peer_deletions, stamped the same
-- way. A node reads "what changed since its last read" as the rows and
-- tombstones with rev_xid >= the xmin of the snapshot of its last read
-- (pg_snapshot_xmin(pg_current_snapshot())): every transaction that was
-- not yet visible to that read has an id >= that xmin, however late it
-- commits, so a change is never skipped (a sequence number alone would
-- be: a transaction that took revision 10 and commits after one that took
-- 11 was read). Tombstones are purged after a retention (nodes also run a
-- full resync on every connect and at a long interval).
CREATE SEQUENCE vpn_peers_rev_seq;
ALTER TABLE vpn_peers
	ADD COLUMN rev     bigint NOT NULL DEFAULT nextval('vpn_peers_rev_seq'),
	ADD COLUMN rev_xid xid8   NOT NULL DEFAULT pg_current_xact_id();
-- The defaults gave the existing rows their revisions; from now on the
-- trigger sets both.
ALTER TABLE vpn_peers ALTER COLUMN rev DROP DEFAULT, ALTER COLUMN rev_xid DROP DEFAULT;
CREATE INDEX vpn_peers_rev_xid ON vpn_peers (site, rev_xid);

CREATE TABLE vpn_peer_deletions (
	site        text        NOT NULL,
	fingerprint text        NOT NULL,
	rev         bigint      NOT NULL,
	rev_xid     xid8        NOT NULL,
	deleted_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (site, rev)
);
CREATE INDEX vpn_peer_deletions_xid ON vpn_peer_deletions (site, rev_xid);
CREATE INDEX vpn_peer_deletions_at ON vpn_peer_deletions (deleted_at);

CREATE FUNCTION vpn_peers_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.rev_xid := pg_current_xact_id();
	NEW.rev := nextval('vpn_peers_rev_seq');
	RETURN NEW;
END $$;
CREATE TRIGGER vpn_peers_stamp BEFORE INSERT OR UPDATE ON vpn_peers
	FOR EACH ROW EXECUTE FUNCTION vpn_peers_stamp();

CREATE FUNCTION vpn_peers_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO vpn_peer_deletions (site, fingerprint, rev, rev_xid)
		VALUES (OLD.site, OLD.fingerprint, nextval('vpn_peers_rev_seq'), pg_current_xact_id());
	RETURN NULL;
END $$;
CREATE TRIGGER vpn_peers_tombstone AFTER DELETE ON vpn_peers
	FOR EACH ROW EXECUTE FUNCTION vpn_peers_tombstone();
