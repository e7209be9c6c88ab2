-- The store's first schema: checks, their results and measurements, drift, and bundles compressed
-- against per-target reference documents. Documented in docs/store.md.
--
-- Times are integers: nanoseconds since the Unix epoch, UTC (columns named *_at).

-- Every target that has been recorded, by its configured name.
CREATE TABLE targets (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE CHECK (name <> '')
);

-- Content-addressed reference documents (see target_dicts), each stored once, zstd-compressed on
-- its own. sha256 is the digest of the uncompressed content.
CREATE TABLE blobs (
    id      INTEGER PRIMARY KEY,
    sha256  BLOB NOT NULL UNIQUE,
    raw_len INTEGER NOT NULL,
    data    BLOB NOT NULL
);

-- The reference document each target's bundles and verdicts are currently compressed against:
-- a few earlier documents of the same kind joined by newlines, used as a zstd raw-content
-- dictionary. last_ratio is the compressed/raw ratio of the last document written against it
-- (NULL right after the reference changed); it decides when the reference is renewed.
CREATE TABLE target_dicts (
    target_id  INTEGER NOT NULL REFERENCES targets(id),
    kind       TEXT NOT NULL CHECK (kind IN ('bundle', 'verdict')),
    blob_id    INTEGER NOT NULL REFERENCES blobs(id),
    last_ratio REAL,
    PRIMARY KEY (target_id, kind)
) WITHOUT ROWID;

-- One row per check. The verdict is kept whole (its JSON, zstd-compressed against the target's
-- verdict reference, verdict_dict) so it comes back exactly; the columns are what queries need.
CREATE TABLE checks (
    id                 INTEGER PRIMARY KEY,
    target_id          INTEGER NOT NULL REFERENCES targets(id),
    scheduled_at       INTEGER NOT NULL,
    started_at         INTEGER NOT NULL,
    finished_at        INTEGER NOT NULL,
    -- The bundle's observed_at as the verdict states it; NULL if it could not be read as a time.
    observed_at        INTEGER,
    state              TEXT NOT NULL CHECK (state IN ('pass', 'unknown', 'fail')),
    attestation_format TEXT NOT NULL,
    verdict_dict       INTEGER NOT NULL REFERENCES blobs(id),
    verdict_len        INTEGER NOT NULL,
    verdict            BLOB NOT NULL,
    -- When retention dropped this check's bundle (NULL while it is stored).
    bundle_removed_at  INTEGER
);
CREATE INDEX checks_target_started ON checks (target_id, started_at);
CREATE INDEX checks_started ON checks (started_at);

-- The checks of a verdict that did not pass, in verdict order (ordinal). Passing results are
-- only in the compressed verdict: they are most of every verdict and nobody queries them.
CREATE TABLE check_results (
    check_id INTEGER NOT NULL REFERENCES checks(id) ON DELETE CASCADE,
    ordinal  INTEGER NOT NULL,
    name     TEXT NOT NULL,
    scope    TEXT NOT NULL,
    state    TEXT NOT NULL CHECK (state IN ('unknown', 'fail')),
    reason   TEXT NOT NULL,
    PRIMARY KEY (check_id, ordinal)
) WITHOUT ROWID;

-- How long each phase of a check took, in the order the phases ran.
CREATE TABLE check_phases (
    check_id    INTEGER NOT NULL REFERENCES checks(id) ON DELETE CASCADE,
    ordinal     INTEGER NOT NULL,
    phase       TEXT NOT NULL,
    duration_ns INTEGER NOT NULL CHECK (duration_ns >= 0),
    PRIMARY KEY (check_id, ordinal)
) WITHOUT ROWID;

-- Every value each tracked field has shown on each node of a target (with the source it was read
-- from), with when and in which check it was first and last seen. Never deleted by retention: drift ("never seen before") is
-- judged against it. first_check and last_check may name checks retention has since deleted.
CREATE TABLE measurement_values (
    id          INTEGER PRIMARY KEY,
    target_id   INTEGER NOT NULL REFERENCES targets(id),
    field       TEXT NOT NULL,
    node        TEXT NOT NULL,
    value       TEXT NOT NULL,
    source      TEXT NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    first_check INTEGER NOT NULL,
    last_check  INTEGER NOT NULL,
    UNIQUE (target_id, field, node, value, source)
);

-- The tracked measurements of each check, in the order recorded, as references to their values.
CREATE TABLE check_measurements (
    check_id INTEGER NOT NULL REFERENCES checks(id) ON DELETE CASCADE,
    ordinal  INTEGER NOT NULL,
    value_id INTEGER NOT NULL REFERENCES measurement_values(id),
    PRIMARY KEY (check_id, ordinal)
) WITHOUT ROWID;

-- Drift events, with the check that raised them.
CREATE TABLE drift_events (
    id         INTEGER PRIMARY KEY,
    check_id   INTEGER NOT NULL REFERENCES checks(id) ON DELETE CASCADE,
    target_id  INTEGER NOT NULL REFERENCES targets(id),
    field      TEXT NOT NULL,
    node       TEXT NOT NULL,
    -- JSON array of the values the target had shown before, sorted.
    old_values TEXT NOT NULL CHECK (json_valid(old_values) AND json_type(old_values) = 'array'),
    new_value  TEXT NOT NULL,
    -- Comma-separated reasons ("new", "not_allowed"); an event always has at least one.
    reasons    TEXT NOT NULL CHECK (reasons <> ''),
    at         INTEGER NOT NULL
);
CREATE INDEX drift_events_check ON drift_events (check_id);
CREATE INDEX drift_events_target_at ON drift_events (target_id, at);

-- Evidence bundles: the compact JSON, zstd-compressed against the target's bundle reference
-- (dict), with the length and SHA-256 of the JSON to check the export.
CREATE TABLE bundles (
    check_id INTEGER PRIMARY KEY REFERENCES checks(id) ON DELETE CASCADE,
    dict     INTEGER NOT NULL REFERENCES blobs(id),
    raw_len  INTEGER NOT NULL,
    sha256   BLOB NOT NULL,
    data     BLOB NOT NULL
);
