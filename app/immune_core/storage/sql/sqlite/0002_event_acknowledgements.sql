-- What each replica acknowledged (HTTP 2xx, Kafka commit), counted in the transaction that stored the
-- events: database-wide, it survives restarts and adds up across replicas, so "acknowledged == stored"
-- can be checked for the whole service (the chaos gate's "no event lost").
CREATE TABLE IF NOT EXISTS event_acknowledgements (
    instance_id TEXT NOT NULL,
    source TEXT NOT NULL,
    acknowledged BIGINT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (instance_id, source)
);
-- Events stored before this table existed were acknowledged by whoever stored them.
INSERT INTO event_acknowledgements (instance_id, source, acknowledged, updated_at)
SELECT 'before-0002', source, count(*), CAST(strftime('%s', 'now') AS REAL) FROM events GROUP BY source;
