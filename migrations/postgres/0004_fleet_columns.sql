-- The instance that ran each check and its vantage point, as
-- migrations/sqlite/0004_fleet_columns.sql, in PostgreSQL's dialect.
ALTER TABLE checks ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE checks ADD COLUMN vantage TEXT NOT NULL DEFAULT '';

CREATE INDEX checks_target_vantage ON checks (target_id, vantage, id);
