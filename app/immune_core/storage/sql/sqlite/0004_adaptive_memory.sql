-- The adaptive layer (expand-only: new tables, nothing existing changes).
-- B-cell memory detectors: a point of one feature space (``features``, a JSON array), the radius it
-- recognises within, and what it means. ``stored_at`` (wall clock) drives the replicas' sync; a detector
-- that tolerance deleted keeps its row with ``deleted`` set, so every replica drops it too.
CREATE TABLE IF NOT EXISTS memory_detectors (
    detector_id TEXT PRIMARY KEY,
    antigen_type TEXT NOT NULL,
    space TEXT NOT NULL,
    category TEXT NOT NULL,
    features TEXT NOT NULL,
    radius REAL NOT NULL,
    stimulations INTEGER NOT NULL,
    severity TEXT NOT NULL,
    origin TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    stored_at REAL NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS memory_detectors_stored ON memory_detectors (stored_at);
-- Every response action the cytotoxic T cells proposed and the verdict it got (published or not).
CREATE TABLE IF NOT EXISTS response_actions (
    action_id TEXT PRIMARY KEY,
    threat_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    critical INTEGER NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    validator TEXT NOT NULL,
    degraded INTEGER NOT NULL,
    payload TEXT NOT NULL,
    decided_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS response_actions_decided ON response_actions (decided_at);
