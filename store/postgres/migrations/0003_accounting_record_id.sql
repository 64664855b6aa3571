-- gatehouse schema 3: one row per accounting record across nodes.
-- compatible-from: 1
--
-- record_id names an accounting record the same way on every node (a hash
-- of the client entry's name and of the request's attributes but those a
-- retransmission changes: radius/acctdedup.go). An access point that fails
-- over to another node resends its unacknowledged records there; each node
-- acknowledges and spools its copy, and the store keeps the first
-- (INSERT … ON CONFLICT DO NOTHING). Records that name no event (no
-- Acct-Session-Id nor Event-Timestamp) have none: each such row is kept.
ALTER TABLE radius_accounting ADD COLUMN record_id text;
CREATE UNIQUE INDEX radius_accounting_record_id ON radius_accounting (record_id) WHERE record_id IS NOT NULL;
