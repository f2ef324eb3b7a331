-- OIDC clients (relying parties) and the single-use ids of their client assertions.
-- Times are INTEGER Unix microseconds.
-- Redirect URIs are a JSON array of the exact strings registered (matched byte for byte).
-- A secret is stored only as its SHA-256 hash; a private_key_jwt client has exactly one of an
-- inline key set (JSON text) or a jwks_uri.
CREATE TABLE oidc_clients (
    client_id      TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    redirect_uris  TEXT NOT NULL,
    auth_method    TEXT NOT NULL CHECK (auth_method IN
                       ('client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none')),
    secret_hash    BLOB,
    jwks           TEXT,
    jwks_uri       TEXT,
    id_token_alg   TEXT NOT NULL CHECK (id_token_alg IN ('ES256', 'RS256')),
    created_at     INTEGER NOT NULL,
    created_by     TEXT NOT NULL,
    revoked_at     INTEGER,
    CHECK ((auth_method IN ('client_secret_basic', 'client_secret_post')) = (secret_hash IS NOT NULL)),
    CHECK ((auth_method = 'private_key_jwt') = (jwks IS NOT NULL OR jwks_uri IS NOT NULL)),
    CHECK (jwks IS NULL OR jwks_uri IS NULL)
);

-- A client assertion's jti is refused a second time until the assertion expires (RFC 7523 §3).
CREATE TABLE oidc_client_assertion_jtis (
    client_id   TEXT NOT NULL REFERENCES oidc_clients (client_id),
    jti         TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX oidc_client_assertion_jtis_expiry_idx ON oidc_client_assertion_jtis (expires_at);
