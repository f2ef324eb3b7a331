-- Fatigue defence: per-user push state (failures, freezes, locks) shared by every instance.

CREATE TABLE user_push_state (
    user_id               UUID PRIMARY KEY REFERENCES users (id),
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    freezes               INTEGER NOT NULL DEFAULT 0,
    frozen_until          TIMESTAMPTZ,
    needs_strong_factor   BOOLEAN NOT NULL DEFAULT FALSE,
    needs_admin_review    BOOLEAN NOT NULL DEFAULT FALSE,
    hard_locked           BOOLEAN NOT NULL DEFAULT FALSE,
    last_wrong_number_at  TIMESTAMPTZ,
    reason                TEXT,
    updated_at            TIMESTAMPTZ NOT NULL
);

-- The prompt's source network (/24 or /64 of the client IP the app reported), for push-spray
-- detection: many different users prompted from one source in a short window.
ALTER TABLE challenges ADD COLUMN source_prefix TEXT;
CREATE INDEX challenges_source_idx ON challenges (source_prefix, created_at) WHERE source_prefix IS NOT NULL;

-- Security alerts (freezes, quarantines, locks, push spray), written in the transaction that
-- causes them, and a single delivery cursor for the signed webhook (leased by one instance).
CREATE TABLE alerts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    details     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE TABLE alert_cursor (
    id               SMALLINT PRIMARY KEY CHECK (id = 1),
    last_delivered   BIGINT NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  TIMESTAMPTZ,
    lease_until      TIMESTAMPTZ,
    last_error       TEXT
);
INSERT INTO alert_cursor (id, last_delivered, attempts) VALUES (1, 0, 0);
