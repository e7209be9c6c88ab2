-- Accepted drift: when a drifted value of a target was accepted, by the pins in force (a reload
-- or restart put a pin accepting it in force, or the pins accepted it when it appeared) or by
-- someone acknowledging it after review (`teewatch history ack`). An acceptance at or after a
-- value's drift event keeps that event from holding teewatch_measurement_drift at 1. Documented
-- in docs/store.md. Times are nanoseconds since the Unix epoch, UTC, as in 0001.
CREATE TABLE drift_acceptances (
    id        INTEGER PRIMARY KEY,
    target_id INTEGER NOT NULL REFERENCES targets(id),
    field     TEXT NOT NULL,
    value     TEXT NOT NULL,
    how       TEXT NOT NULL CHECK (how IN ('pin', 'ack')),
    -- Who acknowledged it (user@host as the command found them); NULL for pins or when unknown.
    by        TEXT,
    -- Why, in the acknowledger's words; NULL when none was given.
    note      TEXT,
    at        INTEGER NOT NULL
);
CREATE INDEX drift_acceptances_target_at ON drift_acceptances (target_id, at);
