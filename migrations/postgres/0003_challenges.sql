-- Number-matching challenges and the push outbox.

CREATE TABLE challenges (
    id                 UUID PRIMARY KEY,
    app_id             UUID NOT NULL REFERENCES apps (id),
    user_id            UUID NOT NULL REFERENCES users (id),
    state              TEXT NOT NULL CHECK (state IN
        ('pending', 'approved', 'denied', 'denied_wrong_number', 'reported', 'expired', 'cancelled', 'redeemed')),
    -- HMAC of (user, number) under a key derived from the master key: compared in constant time,
    -- and lets recent numbers be avoided without storing them.
    number_tag         BYTEA NOT NULL,
    -- The number sealed under the master key, only to answer an idempotent retry identically.
    number_sealed      BYTEA NOT NULL,
    number_digits      SMALLINT NOT NULL,
    server_nonce       BYTEA NOT NULL,
    app_name           TEXT NOT NULL,
    ip                 TEXT NOT NULL,
    user_agent         TEXT NOT NULL,
    location           TEXT,
    created_at         TIMESTAMPTZ NOT NULL,
    expires_at         TIMESTAMPTZ NOT NULL,
    decided_at         TIMESTAMPTZ,
    decided_by_device  UUID REFERENCES devices (id),
    redeemed_at        TIMESTAMPTZ,
    idempotency_key    TEXT,
    request_hash       BYTEA,
    is_silent          BOOLEAN NOT NULL DEFAULT FALSE,
    CONSTRAINT challenges_idempotency_key UNIQUE (app_id, idempotency_key)
);
CREATE INDEX challenges_user_created_idx ON challenges (user_id, created_at DESC);
CREATE INDEX challenges_pending_expiry_idx ON challenges (expires_at) WHERE state = 'pending';

-- Durable push queue: written with the challenge, drained by workers (SKIP LOCKED).
CREATE TABLE push_outbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    challenge_id     UUID NOT NULL REFERENCES challenges (id),
    device_id        UUID NOT NULL REFERENCES devices (id),
    state            TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'failed', 'dropped')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    last_error       TEXT,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX push_outbox_due_idx ON push_outbox (next_attempt_at) WHERE state = 'queued';
