-- CIBA (OpenID Client-Initiated Backchannel Authentication Core 1.0) and the callback outbox.

-- A client may use CIBA in poll or ping mode; ping clients register where to be notified.
ALTER TABLE oidc_clients ADD COLUMN ciba_mode TEXT CHECK (ciba_mode IN ('poll', 'ping'));
ALTER TABLE oidc_clients ADD COLUMN ciba_notification_endpoint TEXT;
ALTER TABLE oidc_clients ADD CONSTRAINT oidc_clients_ciba_ping_endpoint
    CHECK ((ciba_mode IS NOT DISTINCT FROM 'ping') = (ciba_notification_endpoint IS NOT NULL));

-- Backchannel authentication requests, by the SHA-256 of their auth_req_id. A request for a
-- user who could be prompted has a sign-in (`authorization_id`, whose challenge the phone
-- answers); one that could not (unknown user, no device, push refused) has none and a
-- `refusal`, and answers like a prompt nobody answered: the acknowledgement was the same.
-- `expires_at` is the prompt's end plus a grace in which an approval can still be fetched.
CREATE TABLE oidc_ciba_requests (
    request_hash      BYTEA PRIMARY KEY,
    client_id         TEXT NOT NULL REFERENCES oidc_clients (client_id),
    authorization_id  UUID REFERENCES oidc_authorizations (id),
    refusal           TEXT,
    -- Seconds the client must wait between token requests; grows by 5 on each `slow_down`.
    interval_secs     INTEGER NOT NULL,
    next_poll_at      TIMESTAMPTZ NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ NOT NULL,
    redeemed_at       TIMESTAMPTZ,
    CHECK ((authorization_id IS NULL) = (refusal IS NOT NULL))
);
CREATE INDEX oidc_ciba_requests_expires_idx ON oidc_ciba_requests (expires_at);

-- The callback outbox: an HTTP POST owed to someone once a challenge is decided (a CIBA ping
-- to a client's notification endpoint, a Keycloak realm's CIBA callback). Bearer credential
-- and body parts are sealed under the master key. A job is due once its challenge has left
-- `pending` (or at once when it has none: the outcome was known when it was made), retried
-- with backoff until `expires_at`, and never sent after an HTTP answer ended it.
CREATE TABLE callbacks (
    id               UUID PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('ciba_ping', 'keycloak_outcome')),
    challenge_id     UUID REFERENCES challenges (id),
    url              TEXT NOT NULL,
    sealed           BYTEA NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    -- Not sent before this (a request nobody was prompted for: when a prompt would have ended).
    not_before       TIMESTAMPTZ NOT NULL,
    state            TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    last_error       TEXT,
    finished_at      TIMESTAMPTZ
);
CREATE INDEX callbacks_due_idx ON callbacks (next_attempt_at) WHERE state = 'queued';
CREATE INDEX callbacks_challenge_idx ON callbacks (challenge_id);
