-- gatehouse schema 1: the state nodes of one deployment share.
-- compatible-from: 1
-- Every table is keyed by site, so one database can serve several sites.

-- VPN peers: one enrolled certificate = one WireGuard peer and its lease.
-- The database, not the nodes, guarantees that an address, a public key
-- and a certificate are leased once per site.
CREATE TABLE vpn_peers (
	site          text        NOT NULL,
	fingerprint   text        NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
	public_key    text        NOT NULL,
	address       inet        NOT NULL,
	address6      inet,
	identity_key  text        NOT NULL,
	not_after     timestamptz NOT NULL,
	suspended     boolean     NOT NULL DEFAULT false,
	format        integer     NOT NULL,
	record        jsonb       NOT NULL,                -- the peer record (vpn.PeerRecord) without its chain
	chain         bytea       NOT NULL DEFAULT '',     -- the certificate chain, leaf first: per certificate a 4-byte big-endian length and its DER
	node          text        NOT NULL DEFAULT '', -- the node that wrote it last
	quarantine    text,                            -- set: kept aside for an operator, not loaded
	updated_at    timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (site, fingerprint),
	CONSTRAINT vpn_peers_address_key    UNIQUE (site, address),
	CONSTRAINT vpn_peers_address6_key   UNIQUE (site, address6),
	CONSTRAINT vpn_peers_public_key_key UNIQUE (site, public_key)
);
-- Every change to vpn_peers is announced, in its transaction, with
-- pg_notify('gatehouse_vpn', site || ' ' || fingerprint): every node
-- LISTENs and applies it to its WireGuard device and filter.
CREATE INDEX vpn_peers_identity ON vpn_peers (site, identity_key);

-- Wi-Fi sessions: the Class token an Access-Accept carried, linked by
-- accounting to the NAS's session, for Disconnect/CoA from any node. The
-- record holds the whole session, certificate chain (DER) included. An
-- ended session keeps its row (ended = true) so that a late replay of an
-- older update from another node cannot bring it back; updated_at orders
-- the updates.
CREATE TABLE wifi_sessions (
	class_token   text        PRIMARY KEY CHECK (class_token ~ '^[0-9a-f]{32}$'),
	node          text        NOT NULL,
	nas           text        NOT NULL,
	nas_addr      text        NOT NULL,
	acct_session  text,
	station       text,
	framed_ip     inet,
	ended         boolean     NOT NULL DEFAULT false,
	record        jsonb,
	started_at    timestamptz NOT NULL,
	updated_at    timestamptz NOT NULL
);
CREATE INDEX wifi_sessions_acct ON wifi_sessions (nas, acct_session);
CREATE INDEX wifi_sessions_updated ON wifi_sessions (updated_at);

-- Accounting, radacct-like: one row per Accounting-Request. The node that
-- received it makes the idempotency key (node:sequence of its spool), so a
-- replayed spool never makes duplicates.
CREATE TABLE radius_accounting (
	id            bigserial   PRIMARY KEY,
	idem_key      text        NOT NULL UNIQUE,
	node          text        NOT NULL,
	received_at   timestamptz NOT NULL,
	nas           text        NOT NULL,
	nas_addr      text        NOT NULL,
	status_type   text        NOT NULL,
	acct_session  text,
	user_name     text,
	station       text,
	framed_ip     inet,
	session_time  bigint,
	input_octets  numeric,
	output_octets numeric,
	terminate_cause integer,
	class_token   text,
	record        jsonb       NOT NULL
);
CREATE INDEX radius_accounting_session ON radius_accounting (nas, acct_session);
CREATE INDEX radius_accounting_user ON radius_accounting (user_name, received_at);
CREATE INDEX radius_accounting_time ON radius_accounting (received_at);

-- Audit events, when [store] audit = true.
CREATE TABLE audit_events (
	id            bigserial   PRIMARY KEY,
	idem_key      text        NOT NULL UNIQUE,
	node          text        NOT NULL,
	at            timestamptz NOT NULL,
	door          text        NOT NULL,
	event         text        NOT NULL,
	outcome       text        NOT NULL,
	code          text        NOT NULL,
	rule          text,
	identity      text,
	event_json    jsonb       NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at);
