-- Dead letters keep any bytes: ``raw`` is the message as UTF-8 text when it is text the store can keep
-- (no NUL, valid UTF-8), else base64 of the bytes; ``raw_encoding`` says which. ``reason_code`` is the
-- stable machine-readable cause (invalid_event, kind_mismatch, detection_error, storage_error).
ALTER TABLE dead_letters ADD COLUMN raw_encoding TEXT NOT NULL DEFAULT 'utf-8';
ALTER TABLE dead_letters ADD COLUMN reason_code TEXT NOT NULL DEFAULT 'invalid_event';
-- When the sweeper last forwarded a stored-but-unprocessed event to its input topic again.
ALTER TABLE events ADD COLUMN forwarded_at REAL;
-- The sweeper's work list: small (only events detection has not yet committed).
CREATE INDEX IF NOT EXISTS events_unprocessed ON events (received_at) WHERE processed_at IS NULL;
