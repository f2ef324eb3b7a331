-- The OpenID Connect provider's signing keys; see the PostgreSQL migration of the same name.
CREATE TABLE oidc_signing_keys (
    kid           TEXT PRIMARY KEY,
    alg           TEXT NOT NULL CHECK (alg IN ('ES256', 'RS256')),
    generation    INTEGER NOT NULL,
    public_jwk    TEXT NOT NULL,
    sealed_pkcs8  BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    activates_at  INTEGER NOT NULL,
    revoked_at    INTEGER,
    CONSTRAINT oidc_signing_keys_generation_key UNIQUE (alg, generation)
);
