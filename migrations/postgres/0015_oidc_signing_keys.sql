-- The OpenID Connect provider's signing keys (ID tokens, access tokens): one row per key, kept
-- after it retires or is revoked (the history `countersign keys list` shows). Whether a key is
-- pending, active, retiring or retired follows from its times and its successors' (see
-- oidc/keys/model.rs); only revocation is written later.
CREATE TABLE oidc_signing_keys (
    -- Random and URL-safe; the `kid` of the JWKS and of every token the key signs.
    kid           TEXT PRIMARY KEY,
    alg           TEXT NOT NULL CHECK (alg IN ('ES256', 'RS256')),
    -- Each new key of an algorithm takes the next generation, so two instances (or two operators)
    -- creating "the next key" at once collide on the constraint and exactly one key is added.
    generation    BIGINT NOT NULL,
    -- The public key as a JWK (kty, crv/x/y or n/e, kid, alg, use): public members only.
    public_jwk    TEXT NOT NULL,
    -- The private key (PKCS#8), sealed under the master key with the kid and alg as context.
    sealed_pkcs8  BYTEA NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    -- Published from creation; signs from here on, until a later key of its algorithm activates.
    activates_at  TIMESTAMPTZ NOT NULL,
    -- Emergency revocation: out of the JWKS at once, never signs again.
    revoked_at    TIMESTAMPTZ,
    CONSTRAINT oidc_signing_keys_generation_key UNIQUE (alg, generation)
);
