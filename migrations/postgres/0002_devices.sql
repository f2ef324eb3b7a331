-- Enrollments, devices, replay nonces, device notices and the server's device-signing key.

ALTER TABLE users ADD COLUMN deleted_at TIMESTAMPTZ;

-- The activation code itself is never stored in the clear: `code_hash` (SHA-256) finds the row,
-- `code_sealed` (AES-GCM under the master key) lets the QR code be shown again until it is used.
CREATE TABLE enrollments (
    id                UUID PRIMARY KEY,
    user_id           UUID NOT NULL REFERENCES users (id),
    code_hash         BYTEA NOT NULL,
    code_sealed       BYTEA,
    is_second_device  BOOLEAN NOT NULL,
    created_by        TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ NOT NULL,
    used_at           TIMESTAMPTZ,
    device_id         UUID,
    CONSTRAINT enrollments_code_hash_key UNIQUE (code_hash)
);
CREATE INDEX enrollments_user_idx ON enrollments (user_id);

CREATE TABLE devices (
    id                UUID PRIMARY KEY,
    user_id           UUID NOT NULL REFERENCES users (id),
    public_key        BYTEA NOT NULL,
    push_provider     TEXT NOT NULL CHECK (push_provider IN ('apns', 'fcm', 'none')),
    push_token        TEXT,
    push_environment  TEXT,
    name              TEXT NOT NULL,
    platform          TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    revoked_at        TIMESTAMPTZ,
    last_counter      BIGINT NOT NULL DEFAULT 0,
    -- A key belongs to one device of one user, forever; phones make a fresh key per enrollment.
    CONSTRAINT devices_public_key_key UNIQUE (public_key)
);
CREATE INDEX devices_user_idx ON devices (user_id);
-- A push token reaches one phone app install: it may be bound to one active device only.
CREATE UNIQUE INDEX devices_push_token_active_key ON devices (push_provider, push_token)
    WHERE revoked_at IS NULL AND push_token IS NOT NULL;

-- Signed device requests seen within their replay window.
CREATE TABLE device_request_nonces (
    device_id   UUID NOT NULL REFERENCES devices (id),
    nonce       BYTEA NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (device_id, nonce)
);
CREATE INDEX device_request_nonces_expiry_idx ON device_request_nonces (expires_at);

-- Security notices for a user's other devices ("a new device was enrolled").
CREATE TABLE device_notices (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   UUID NOT NULL REFERENCES devices (id),
    kind        TEXT NOT NULL,
    details     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX device_notices_device_idx ON device_notices (device_id, created_at);

-- The P-256 key the server signs challenge details with; the private half sealed under the
-- master key. One row: the first instance to start creates it, the others read it.
CREATE TABLE server_keys (
    id            SMALLINT PRIMARY KEY CHECK (id = 1),
    public_key    BYTEA NOT NULL,
    sealed_pkcs8  BYTEA NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
