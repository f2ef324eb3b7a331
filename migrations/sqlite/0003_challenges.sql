-- Number-matching challenges and the push outbox.

CREATE TABLE challenges (
    id                 TEXT PRIMARY KEY,
    app_id             TEXT NOT NULL REFERENCES apps (id),
    user_id            TEXT NOT NULL REFERENCES users (id),
    state              TEXT NOT NULL CHECK (state IN
        ('pending', 'approved', 'denied', 'denied_wrong_number', 'reported', 'expired', 'cancelled', 'redeemed')),
    number_tag         BLOB NOT NULL,
    number_sealed      BLOB NOT NULL,
    number_digits      INTEGER NOT NULL,
    server_nonce       BLOB NOT NULL,
    app_name           TEXT NOT NULL,
    ip                 TEXT NOT NULL,
    user_agent         TEXT NOT NULL,
    location           TEXT,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    decided_at         INTEGER,
    decided_by_device  TEXT REFERENCES devices (id),
    redeemed_at        INTEGER,
    idempotency_key    TEXT,
    request_hash       BLOB,
    is_silent          INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT challenges_idempotency_key UNIQUE (app_id, idempotency_key)
);
CREATE INDEX challenges_user_created_idx ON challenges (user_id, created_at DESC);
CREATE INDEX challenges_pending_expiry_idx ON challenges (expires_at) WHERE state = 'pending';

CREATE TABLE push_outbox (
    id               INTEGER PRIMARY KEY,
    challenge_id     TEXT NOT NULL REFERENCES challenges (id),
    device_id        TEXT NOT NULL REFERENCES devices (id),
    state            TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'failed', 'dropped')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX push_outbox_due_idx ON push_outbox (next_attempt_at) WHERE state = 'queued';
