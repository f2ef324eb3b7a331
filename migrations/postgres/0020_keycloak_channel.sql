-- Keycloak's CIBA HTTP authentication channel (server/src/keycloak).

-- The app each configured realm acts as in the challenge machinery (challenges, the fatigue
-- ladder and the audit trail name an app): made on the realm's first request, with no usable key.
CREATE TABLE keycloak_realm_apps (
    realm_issuer  TEXT PRIMARY KEY,
    app_id        UUID NOT NULL REFERENCES apps (id),
    CONSTRAINT keycloak_realm_apps_app_key UNIQUE (app_id)
);

-- Which Countersign user a realm's user (the token's `sub`) is, pinned on first use: the body
-- Keycloak sends is not signed, so a copied token sent again with another `login_hint` must
-- not prompt (and approve for) someone else.
CREATE TABLE keycloak_subjects (
    realm_issuer  TEXT NOT NULL,
    subject       TEXT NOT NULL,
    user_id       UUID NOT NULL REFERENCES users (id),
    pinned_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (realm_issuer, subject)
);

-- Delegation requests by the token's `jti` (Keycloak's `auth_result_id`): the primary key makes
-- a token single use; a row is kept at least until the token expires.
-- outcome: 'admitted' (token spent, nothing decided yet), 'prompted' (a challenge was created),
-- 'cancelled' (answered 201 but nobody prompted: unknown user, no device, push refused).
CREATE TABLE keycloak_requests (
    realm_issuer  TEXT NOT NULL,
    jti           TEXT NOT NULL,
    subject       TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    user_id       UUID REFERENCES users (id),
    challenge_id  UUID REFERENCES challenges (id),
    outcome       TEXT NOT NULL CHECK (outcome IN ('admitted', 'prompted', 'cancelled')),
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (realm_issuer, jti)
);
CREATE INDEX keycloak_requests_expires_idx ON keycloak_requests (expires_at);
