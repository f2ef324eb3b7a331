-- Keycloak's CIBA HTTP authentication channel; see the PostgreSQL migration of the same name.
-- Times are INTEGER Unix microseconds.

CREATE TABLE keycloak_realm_apps (
    realm_issuer  TEXT PRIMARY KEY,
    app_id        TEXT NOT NULL REFERENCES apps (id),
    CONSTRAINT keycloak_realm_apps_app_key UNIQUE (app_id)
);

CREATE TABLE keycloak_subjects (
    realm_issuer  TEXT NOT NULL,
    subject       TEXT NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id),
    pinned_at     INTEGER NOT NULL,
    PRIMARY KEY (realm_issuer, subject)
);

CREATE TABLE keycloak_requests (
    realm_issuer  TEXT NOT NULL,
    jti           TEXT NOT NULL,
    subject       TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    user_id       TEXT REFERENCES users (id),
    challenge_id  TEXT REFERENCES challenges (id),
    outcome       TEXT NOT NULL CHECK (outcome IN ('admitted', 'prompted', 'cancelled')),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    PRIMARY KEY (realm_issuer, jti)
);
CREATE INDEX keycloak_requests_expires_idx ON keycloak_requests (expires_at);
