-- The OpenID Connect authorization code flow; see the PostgreSQL migration of the same name.
-- Times are INTEGER Unix microseconds.

-- The app each OIDC client acts as in the challenge machinery (challenges, the fatigue ladder
-- and the audit trail name an app): made on the client's first sign-in, with no usable key.
CREATE TABLE oidc_client_apps (
    client_id  TEXT PRIMARY KEY REFERENCES oidc_clients (client_id),
    app_id     TEXT NOT NULL REFERENCES apps (id),
    CONSTRAINT oidc_client_apps_app_key UNIQUE (app_id)
);

-- Pushed authorization requests (RFC 9126): what an authenticated client sent, used once.
CREATE TABLE oidc_pushed_requests (
    request_hash  BLOB PRIMARY KEY,
    client_id     TEXT NOT NULL REFERENCES oidc_clients (client_id),
    -- The pushed parameters, a JSON object of strings.
    params        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);
CREATE INDEX oidc_pushed_requests_expires_idx ON oidc_pushed_requests (expires_at);

-- Sign-ins in progress: the validated request, the user, the challenge that answers it, and
-- the browser it is bound to (SHA-256 of the secret in that browser's cookie).
CREATE TABLE oidc_authorizations (
    id             TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL REFERENCES oidc_clients (client_id),
    user_id        TEXT NOT NULL REFERENCES users (id),
    -- The validated authorization request (JSON).
    request        TEXT NOT NULL,
    challenge_id   TEXT NOT NULL REFERENCES challenges (id),
    -- What the page shows or uses again on reload, sealed under the master key: a push's
    -- number, or a passkey sign-in's page token.
    page_secret_sealed  BLOB NOT NULL,
    browser_hash   BLOB NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    finished_at    INTEGER
);
CREATE INDEX oidc_authorizations_expires_idx ON oidc_authorizations (expires_at);

-- Authorization codes: single use, short-lived, bound to client, redirect URI, PKCE challenge
-- and nonce (all in `grant`).
CREATE TABLE oidc_codes (
    code_hash         BLOB PRIMARY KEY,
    authorization_id  TEXT NOT NULL REFERENCES oidc_authorizations (id),
    client_id         TEXT NOT NULL REFERENCES oidc_clients (client_id),
    user_id           TEXT NOT NULL REFERENCES users (id),
    -- What the code grants (JSON): redirect URI, PKCE challenge, nonce, scope, acr, amr, auth_time.
    grant_details     TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    redeemed_at       INTEGER,
    CONSTRAINT oidc_codes_authorization_key UNIQUE (authorization_id)
);
CREATE INDEX oidc_codes_expires_idx ON oidc_codes (expires_at);

-- Access tokens by jti: a code presented a second time revokes what its first use issued.
CREATE TABLE oidc_access_tokens (
    jti         TEXT PRIMARY KEY,
    code_hash   BLOB NOT NULL REFERENCES oidc_codes (code_hash),
    client_id   TEXT NOT NULL REFERENCES oidc_clients (client_id),
    user_id     TEXT NOT NULL REFERENCES users (id),
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX oidc_access_tokens_code_idx ON oidc_access_tokens (code_hash);
