-- Regulatory T tolerance (expand-only: a new table, nothing existing changes).
-- Self samples learned in the training window: one row per (feature space, vector rounded to 0.01,
-- a JSON array). ``training_started_at`` (event time, epoch s) is when the learning engine's window
-- opened, so a restart continues that window instead of opening a new one; ``stored_at`` (wall clock)
-- drives the replicas' sync, as for memory_detectors.
CREATE TABLE IF NOT EXISTS self_samples (
    space TEXT NOT NULL,
    vector TEXT NOT NULL,
    training_started_at DOUBLE PRECISION NOT NULL,
    stored_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (space, vector)
);
CREATE INDEX IF NOT EXISTS self_samples_stored ON self_samples (stored_at);
