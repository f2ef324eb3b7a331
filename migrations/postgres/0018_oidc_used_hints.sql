-- Upstream issuers' id_token_hints already used (SHA-256), kept until they are too old to be
-- accepted anyway: a hint names whom to prompt once, so a copied hint cannot push-bomb.
CREATE TABLE oidc_used_hints (
    hint_hash   BYTEA PRIMARY KEY,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX oidc_used_hints_expires_idx ON oidc_used_hints (expires_at);
