-- CIBA and the callback outbox; see the PostgreSQL migration of the same name.
-- Times are INTEGER Unix microseconds.

ALTER TABLE oidc_clients ADD COLUMN ciba_mode TEXT CHECK (ciba_mode IN ('poll', 'ping'));
-- Paired with ciba_mode = 'ping' (SQLite cannot add a table CHECK; the store writes both).
ALTER TABLE oidc_clients ADD COLUMN ciba_notification_endpoint TEXT;

CREATE TABLE oidc_ciba_requests (
    request_hash      BLOB PRIMARY KEY,
    client_id         TEXT NOT NULL REFERENCES oidc_clients (client_id),
    authorization_id  TEXT REFERENCES oidc_authorizations (id),
    refusal           TEXT,
    interval_secs     INTEGER NOT NULL,
    next_poll_at      INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    redeemed_at       INTEGER,
    CHECK ((authorization_id IS NULL) = (refusal IS NOT NULL))
);
CREATE INDEX oidc_ciba_requests_expires_idx ON oidc_ciba_requests (expires_at);

CREATE TABLE callbacks (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('ciba_ping', 'keycloak_outcome')),
    challenge_id     TEXT REFERENCES challenges (id),
    url              TEXT NOT NULL,
    sealed           BLOB NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    -- Not sent before this (a request nobody was prompted for: when a prompt would have ended).
    not_before       INTEGER NOT NULL,
    state            TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    finished_at      INTEGER
);
CREATE INDEX callbacks_due_idx ON callbacks (next_attempt_at) WHERE state = 'queued';
CREATE INDEX callbacks_challenge_idx ON callbacks (challenge_id);
