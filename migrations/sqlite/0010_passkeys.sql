-- Passkeys and security keys (WebAuthn); see the PostgreSQL migration of the same name.

CREATE TABLE webauthn_user_handles (
    user_id  TEXT PRIMARY KEY REFERENCES users (id),
    handle   BLOB NOT NULL,
    CONSTRAINT webauthn_user_handles_handle_key UNIQUE (handle)
);

CREATE TABLE passkeys (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users (id),
    credential_id    BLOB NOT NULL,
    name             TEXT NOT NULL,
    static_state     BLOB NOT NULL,
    dynamic_state    BLOB NOT NULL,
    transports       INTEGER NOT NULL,
    aaguid           BLOB NOT NULL,
    backup_eligible  INTEGER NOT NULL,
    backed_up        INTEGER NOT NULL,
    sign_count       INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    last_used_at     INTEGER,
    revoked_at       INTEGER,
    CONSTRAINT passkeys_credential_id_key UNIQUE (credential_id)
);
CREATE INDEX passkeys_user_idx ON passkeys (user_id);

CREATE TABLE webauthn_registrations (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users (id),
    app_id           TEXT NOT NULL REFERENCES apps (id),
    -- What the passkey will be called (the app may rename it later).
    name             TEXT NOT NULL,
    is_first_factor  INTEGER NOT NULL,
    server_state     BLOB NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL
);
CREATE INDEX webauthn_registrations_expires_idx ON webauthn_registrations (expires_at);

CREATE TABLE passkey_sign_ins (
    challenge_id       TEXT PRIMARY KEY REFERENCES challenges (id),
    server_state       BLOB NOT NULL,
    failed_assertions  INTEGER NOT NULL DEFAULT 0
);
