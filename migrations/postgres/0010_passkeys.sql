-- Passkeys and security keys (WebAuthn): the user handle each user's credentials share, the
-- registered credentials, and the ceremonies in flight (kept here, not in memory, so any
-- instance can finish what another began).

-- A random handle per user, given to authenticators instead of anything that names the user.
CREATE TABLE webauthn_user_handles (
    user_id  UUID PRIMARY KEY REFERENCES users (id),
    handle   BYTEA NOT NULL,
    CONSTRAINT webauthn_user_handles_handle_key UNIQUE (handle)
);

CREATE TABLE passkeys (
    id               UUID PRIMARY KEY,
    user_id          UUID NOT NULL REFERENCES users (id),
    -- A credential id is bound to one user forever: revoked rows stay, so it is never reused.
    credential_id    BYTEA NOT NULL,
    name             TEXT NOT NULL,
    -- webauthn_rp's encodings: the public key and static extensions; UV, backup, counter, attachment.
    static_state     BYTEA NOT NULL,
    dynamic_state    BYTEA NOT NULL,
    transports       SMALLINT NOT NULL,
    aaguid           BYTEA NOT NULL,
    backup_eligible  BOOLEAN NOT NULL,
    backed_up        BOOLEAN NOT NULL,
    sign_count       BIGINT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    last_used_at     TIMESTAMPTZ,
    revoked_at       TIMESTAMPTZ,
    CONSTRAINT passkeys_credential_id_key UNIQUE (credential_id)
);
CREATE INDEX passkeys_user_idx ON passkeys (user_id);

-- Registration ceremonies: single use (deleted by compare-and-set when completed), expiring.
CREATE TABLE webauthn_registrations (
    id               UUID PRIMARY KEY,
    user_id          UUID NOT NULL REFERENCES users (id),
    app_id           UUID NOT NULL REFERENCES apps (id),
    -- What the passkey will be called (the app may rename it later).
    name             TEXT NOT NULL,
    -- Begun for a user without any factor: refused at completion if one appeared meanwhile.
    is_first_factor  BOOLEAN NOT NULL,
    server_state     BYTEA NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX webauthn_registrations_expires_idx ON webauthn_registrations (expires_at);

-- A passkey sign-in is a challenge (`challenges`, with number_digits = 0: no number, no push)
-- plus the WebAuthn request it is answered by, and the failed assertions it has seen (its own
-- budget, apart from push).
CREATE TABLE passkey_sign_ins (
    challenge_id       UUID PRIMARY KEY REFERENCES challenges (id),
    server_state       BYTEA NOT NULL,
    failed_assertions  INTEGER NOT NULL DEFAULT 0
);
