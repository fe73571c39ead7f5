-- Events as received; processed_at marks that detection ran and its outputs were committed.
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    occurred_at DOUBLE PRECISION NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL,
    payload TEXT NOT NULL,
    processed_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS events_received_at ON events (received_at);
CREATE INDEX IF NOT EXISTS events_kind_received_at ON events (kind, received_at);

CREATE TABLE IF NOT EXISTS threats (
    seq BIGSERIAL PRIMARY KEY,
    threat_id TEXT NOT NULL UNIQUE,
    signature TEXT NOT NULL,
    detected_at DOUBLE PRECISION NOT NULL,
    stored_at DOUBLE PRECISION NOT NULL,
    category TEXT NOT NULL,
    antigen_type TEXT NOT NULL,
    antigen TEXT NOT NULL,
    severity TEXT NOT NULL,
    severity_rank INTEGER NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    host_id TEXT,
    cause_event_id TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS threats_stored_at ON threats (stored_at);
CREATE INDEX IF NOT EXISTS threats_antigen ON threats (antigen);
CREATE INDEX IF NOT EXISTS threats_category ON threats (category, seq);

-- Immunological memory: one row per threat signature ever confirmed.
CREATE TABLE IF NOT EXISTS memory_signatures (
    signature TEXT PRIMARY KEY,
    category TEXT NOT NULL,
    antigen_type TEXT NOT NULL,
    antigen TEXT NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    occurrences BIGINT NOT NULL,
    max_severity_rank INTEGER NOT NULL
);

-- Transactional outbox: rows written with their cause, published by the relay.
CREATE TABLE IF NOT EXISTS outbox (
    id BIGSERIAL PRIMARY KEY,
    topic TEXT NOT NULL,
    message_key TEXT,
    payload TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    published_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (id) WHERE published_at IS NULL;

CREATE TABLE IF NOT EXISTS dead_letters (
    id BIGSERIAL PRIMARY KEY,
    topic TEXT NOT NULL,
    kafka_partition INTEGER,
    kafka_offset BIGINT,
    reason TEXT NOT NULL,
    raw TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL
);

-- Leases with fencing tokens: token only ever grows, by one per change of holder.
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    token BIGINT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    acquired_at DOUBLE PRECISION NOT NULL
);

-- Every singleton action, with the token it ran under (audits "no duplicate singleton work").
CREATE TABLE IF NOT EXISTS singleton_ledger (
    id BIGSERIAL PRIMARY KEY,
    duty TEXT NOT NULL,
    token BIGINT NOT NULL,
    holder TEXT NOT NULL,
    ran_at DOUBLE PRECISION NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS singleton_ledger_duty ON singleton_ledger (duty, id);

CREATE TABLE IF NOT EXISTS homeostasis (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    level INTEGER NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    token BIGINT NOT NULL,
    override_level INTEGER,
    override_until DOUBLE PRECISION,
    override_reason TEXT
);

CREATE TABLE IF NOT EXISTS lymphnodes (
    node_id TEXT PRIMARY KEY,
    region TEXT NOT NULL,
    activated BOOLEAN NOT NULL,
    threat_count INTEGER NOT NULL,
    max_severity_rank INTEGER NOT NULL,
    payload TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    token BIGINT NOT NULL
);

-- Cell population changes made through the API, in order. Every replica applies the same log to
-- its detection engine, so cell ids (assigned in order by the engine) agree across replicas.
CREATE TABLE IF NOT EXISTS agent_ops (
    seq BIGSERIAL PRIMARY KEY,
    op TEXT NOT NULL,
    cell_type TEXT,
    params TEXT,
    target_cell_id TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
