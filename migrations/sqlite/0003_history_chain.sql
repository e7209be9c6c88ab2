-- Tamper-evident history (issue 19): every check written from this migration on carries the
-- SHA-256 of a canonical encoding of its record (record_hash), and that encoding includes the
-- record hash of the target's previous check (prev_hash). Editing, deleting or reordering stored
-- checks breaks a link, which `teewatch history verify` finds. Documented in docs/store.md.
--
-- Checks stored before this migration are not chained (their hash columns stay NULL): a hash
-- computed now would only vouch for rows nobody watched being written. chain_start records
-- where they end, so a NULL hash on a later check reads as tampering, not as history.

-- SHA-256 of the verdict JSON and of the bundle JSON exactly as stored (before compression). The
-- bundle's stays when retention drops the bundle, so the chain is still checkable without it.
ALTER TABLE checks ADD COLUMN verdict_sha256 BLOB;
ALTER TABLE checks ADD COLUMN bundle_sha256 BLOB;
-- The record hash of the target's previous check (32 zero bytes for a target's first chained
-- check), and this check's own record hash.
ALTER TABLE checks ADD COLUMN prev_hash BLOB;
ALTER TABLE checks ADD COLUMN record_hash BLOB;

-- The record hash and id of the newest check written for the target: the next check links to
-- it, even when retention has deleted that check since.
ALTER TABLE targets ADD COLUMN chain_head BLOB;
ALTER TABLE targets ADD COLUMN chain_head_check INTEGER;

-- Where a check's predecessor in its target's chain was deleted by retention: the deleted
-- check's id and record hash, which the kept check links to.
CREATE TABLE chain_gaps (
    check_id   INTEGER PRIMARY KEY REFERENCES checks(id) ON DELETE CASCADE,
    prev_check INTEGER NOT NULL,
    prev_hash  BLOB NOT NULL,
    -- When the gap was noted: by retention as it deleted the check, or by the next check written.
    noted_at   INTEGER NOT NULL
);

-- One row: checks with an id up to legacy_max_id were stored before the chain existed.
CREATE TABLE chain_start (
    legacy_max_id INTEGER NOT NULL
);
INSERT INTO chain_start (legacy_max_id) SELECT COALESCE(MAX(id), 0) FROM checks;

-- A target's checks in chain (write) order, for retention's gaps and for `history verify`.
CREATE INDEX checks_target_id ON checks (target_id, id);
