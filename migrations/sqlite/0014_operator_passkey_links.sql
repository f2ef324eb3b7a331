-- Operator-issued passkey links; see the PostgreSQL migration of the same name. SQLite cannot
-- drop a NOT NULL constraint, so both tables are rebuilt with their rows (ceremonies in flight
-- survive the upgrade). Nothing references either table.
CREATE TABLE webauthn_registrations_next (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users (id),
    app_id           TEXT REFERENCES apps (id),
    name             TEXT NOT NULL,
    is_first_factor  INTEGER NOT NULL,
    server_state     BLOB NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL
);
INSERT INTO webauthn_registrations_next
    SELECT id, user_id, app_id, name, is_first_factor, server_state, created_at, expires_at
    FROM webauthn_registrations;
DROP TABLE webauthn_registrations;
ALTER TABLE webauthn_registrations_next RENAME TO webauthn_registrations;
CREATE INDEX webauthn_registrations_expires_idx ON webauthn_registrations (expires_at);

CREATE TABLE passkey_enrollment_links_next (
    code_hash        BLOB PRIMARY KEY,
    registration_id  TEXT NOT NULL,
    user_id          TEXT NOT NULL REFERENCES users (id),
    username         TEXT NOT NULL,
    app_id           TEXT REFERENCES apps (id),
    app_name         TEXT,
    options          TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    CONSTRAINT passkey_enrollment_links_registration_key UNIQUE (registration_id)
);
INSERT INTO passkey_enrollment_links_next
    SELECT code_hash, registration_id, user_id, username, app_id, app_name, options, created_at, expires_at
    FROM passkey_enrollment_links;
DROP TABLE passkey_enrollment_links;
ALTER TABLE passkey_enrollment_links_next RENAME TO passkey_enrollment_links;
CREATE INDEX passkey_enrollment_links_expires_idx ON passkey_enrollment_links (expires_at);
