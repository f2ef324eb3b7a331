-- Enrollments, devices, replay nonces, device notices and the server's device-signing key.

ALTER TABLE users ADD COLUMN deleted_at INTEGER;

CREATE TABLE enrollments (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id),
    code_hash         BLOB NOT NULL,
    code_sealed       BLOB,
    is_second_device  INTEGER NOT NULL,
    created_by        TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    used_at           INTEGER,
    device_id         TEXT,
    CONSTRAINT enrollments_code_hash_key UNIQUE (code_hash)
);
CREATE INDEX enrollments_user_idx ON enrollments (user_id);

CREATE TABLE devices (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id),
    public_key        BLOB NOT NULL,
    push_provider     TEXT NOT NULL CHECK (push_provider IN ('apns', 'fcm', 'none')),
    push_token        TEXT,
    push_environment  TEXT,
    name              TEXT NOT NULL,
    platform          TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    revoked_at        INTEGER,
    last_counter      INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT devices_public_key_key UNIQUE (public_key)
);
CREATE INDEX devices_user_idx ON devices (user_id);
CREATE UNIQUE INDEX devices_push_token_active_key ON devices (push_provider, push_token)
    WHERE revoked_at IS NULL AND push_token IS NOT NULL;

CREATE TABLE device_request_nonces (
    device_id   TEXT NOT NULL REFERENCES devices (id),
    nonce       BLOB NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, nonce)
);
CREATE INDEX device_request_nonces_expiry_idx ON device_request_nonces (expires_at);

CREATE TABLE device_notices (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices (id),
    kind        TEXT NOT NULL,
    details     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX device_notices_device_idx ON device_notices (device_id, created_at);

CREATE TABLE server_keys (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    public_key    BLOB NOT NULL,
    sealed_pkcs8  BLOB NOT NULL,
    created_at    INTEGER NOT NULL
);
