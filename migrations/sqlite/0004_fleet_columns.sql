-- Several instances can share one history (issue 22): each check records the instance that ran
-- it and that instance's vantage point ('' in shard mode, where every target has one vantage).
-- Checks stored before this migration keep '' for both. Documented in docs/store.md.
ALTER TABLE checks ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE checks ADD COLUMN vantage TEXT NOT NULL DEFAULT '';

-- The newest check of a target from each vantage point.
CREATE INDEX checks_target_vantage ON checks (target_id, vantage, id);
