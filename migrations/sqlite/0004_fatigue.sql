-- Fatigue defence: per-user push state (failures, freezes, locks).

CREATE TABLE user_push_state (
    user_id               TEXT PRIMARY KEY REFERENCES users (id),
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    freezes               INTEGER NOT NULL DEFAULT 0,
    frozen_until          INTEGER,
    needs_strong_factor   INTEGER NOT NULL DEFAULT 0,
    needs_admin_review    INTEGER NOT NULL DEFAULT 0,
    hard_locked           INTEGER NOT NULL DEFAULT 0,
    last_wrong_number_at  INTEGER,
    reason                TEXT,
    updated_at            INTEGER NOT NULL
);

ALTER TABLE challenges ADD COLUMN source_prefix TEXT;
CREATE INDEX challenges_source_idx ON challenges (source_prefix, created_at) WHERE source_prefix IS NOT NULL;

CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    details     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE alert_cursor (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    last_delivered   INTEGER NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER,
    lease_until      INTEGER,
    last_error       TEXT
);
INSERT INTO alert_cursor (id, last_delivered, attempts) VALUES (1, 0, 0);
