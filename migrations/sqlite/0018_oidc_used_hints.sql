-- Upstream issuers' id_token_hints already used; see the PostgreSQL migration of the same name.
CREATE TABLE oidc_used_hints (
    hint_hash   BLOB PRIMARY KEY,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX oidc_used_hints_expires_idx ON oidc_used_hints (expires_at);
