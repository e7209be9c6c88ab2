-- The tamper-evident history, as migrations/sqlite/0003_history_chain.sql (read it for why each
-- column exists), in PostgreSQL's dialect. A PostgreSQL store starts with this schema, so
-- chain_start records that no check predates the chain.
ALTER TABLE checks ADD COLUMN verdict_sha256 BYTEA;
ALTER TABLE checks ADD COLUMN bundle_sha256 BYTEA;
ALTER TABLE checks ADD COLUMN prev_hash BYTEA;
ALTER TABLE checks ADD COLUMN record_hash BYTEA;

ALTER TABLE targets ADD COLUMN chain_head BYTEA;
ALTER TABLE targets ADD COLUMN chain_head_check BIGINT;

CREATE TABLE chain_gaps (
    check_id   BIGINT PRIMARY KEY REFERENCES checks(id) ON DELETE CASCADE,
    prev_check BIGINT NOT NULL,
    prev_hash  BYTEA NOT NULL,
    noted_at   BIGINT NOT NULL
);

CREATE TABLE chain_start (
    legacy_max_id BIGINT NOT NULL
);
INSERT INTO chain_start (legacy_max_id) SELECT COALESCE(MAX(id), 0) FROM checks;

CREATE INDEX checks_target_id ON checks (target_id, id);
