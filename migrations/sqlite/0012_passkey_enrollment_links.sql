-- Single-use links to the hosted passkey registration page; see the PostgreSQL migration of the
-- same name.
CREATE TABLE passkey_enrollment_links (
    code_hash        BLOB PRIMARY KEY,
    registration_id  TEXT NOT NULL,
    user_id          TEXT NOT NULL REFERENCES users (id),
    username         TEXT NOT NULL,
    app_id           TEXT NOT NULL REFERENCES apps (id),
    app_name         TEXT NOT NULL,
    options          TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    CONSTRAINT passkey_enrollment_links_registration_key UNIQUE (registration_id)
);
CREATE INDEX passkey_enrollment_links_expires_idx ON passkey_enrollment_links (expires_at);
