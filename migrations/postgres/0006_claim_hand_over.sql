-- A slot claimed by an instance that died or froze before storing its check is handed over
-- (docs/fleet.md, "A slot claimed and never stored"). Each claim records the incarnation of the
-- instance that made it (its fleet_instances.started_at when it claimed) and whether its check
-- was stored; a peer may take over a claim whose check is not stored and whose incarnation is
-- no longer live, and a check is stored only while its claim is still its instance's, checked
-- under the claim's row lock in the check's own transaction. So no slot is stored twice and
-- no slot is lost with its instance.
--
-- Claims made before this migration count as stored: they are old, and taking one over could
-- store a second check of a slot that already has one.
ALTER TABLE slot_claims
    ADD COLUMN incarnation BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stored BOOLEAN NOT NULL DEFAULT true;
ALTER TABLE slot_claims ALTER COLUMN stored SET DEFAULT false;

-- Pruning deletes by age: without an index each hourly prune read every claim.
CREATE INDEX slot_claims_claimed_at ON slot_claims (claimed_at);
