-- Which deployment colour is live (expand-only: a new table). One row per key; the key in use is
-- 'active_color'. No row: every colour is live (a single-colour deployment, the local stack).
CREATE TABLE IF NOT EXISTS deployment_state (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
