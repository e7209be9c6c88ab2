-- The fleet of teewatch instances sharing this database (docs/fleet.md). Every time is in
-- nanoseconds since the epoch by the DATABASE's clock,
-- (extract(epoch from clock_timestamp()) * 1e9)::bigint, so no instance's clock ever decides
-- whether a lease has run out.

-- One row per instance that ever joined: it is live while heartbeat_at + lease_ns is later than
-- the database's now. A clean shutdown sets heartbeat_at back by its lease, so peers take over
-- at once; rows silent for a day are pruned.
CREATE TABLE fleet_instances (
    name TEXT PRIMARY KEY,
    vantage TEXT NOT NULL,
    mode TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    lease_ns BIGINT NOT NULL
);

-- Who ran each slot of each target (per vantage point; '' in shard mode): an instance runs a
-- check only after its INSERT of the slot's row succeeded, so no slot is checked twice, even
-- while two instances disagree about who is live. Claims older than a day are pruned.
CREATE TABLE slot_claims (
    target TEXT NOT NULL,
    vantage TEXT NOT NULL,
    slot_at BIGINT NOT NULL,
    instance TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    PRIMARY KEY (target, vantage, slot_at)
);
