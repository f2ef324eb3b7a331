-- The admin plane (server/src/admin): admins, their passkeys, sessions and four-eyes requests.
-- Admins are not users: an app key (which can create, change and delete users) never reaches
-- an admin, and nothing of the push machinery applies to them.

-- status: 'invited' (approved, no passkey yet), 'active', 'removal_pending' (soft removal, no
-- sessions, not counted as active), 'removed'.
CREATE TABLE admins (
    id               UUID PRIMARY KEY,
    name             TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('admin', 'helpdesk', 'auditor')),
    status           TEXT NOT NULL CHECK (status IN ('invited', 'active', 'removal_pending', 'removed')),
    -- The WebAuthn user handle of the admin's passkeys: a discoverable sign-in names the admin
    -- by it, so no name is typed and none can be probed.
    webauthn_handle  BYTEA NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    -- The audit actor who created the admin ('cli' for the bootstrap, 'admin:<id>' otherwise).
    created_by       TEXT NOT NULL,
    removal_due_at   TIMESTAMPTZ,
    removed_at       TIMESTAMPTZ,
    CONSTRAINT admins_name_key UNIQUE (name),
    CONSTRAINT admins_webauthn_handle_key UNIQUE (webauthn_handle)
);

-- An admin's passkeys, shaped like users' passkeys (0010). A credential id is bound once, and
-- never in both tables (the services check the other table in the same transaction).
CREATE TABLE admin_passkeys (
    id               UUID PRIMARY KEY,
    admin_id         UUID NOT NULL REFERENCES admins (id),
    credential_id    BYTEA NOT NULL,
    name             TEXT NOT NULL,
    static_state     BYTEA NOT NULL,
    dynamic_state    BYTEA NOT NULL,
    aaguid           BYTEA NOT NULL,
    backup_eligible  BOOLEAN NOT NULL,
    backed_up        BOOLEAN NOT NULL,
    sign_count       BIGINT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    last_used_at     TIMESTAMPTZ,
    revoked_at       TIMESTAMPTZ,
    CONSTRAINT admin_passkeys_credential_id_key UNIQUE (credential_id)
);
CREATE INDEX admin_passkeys_admin_idx ON admin_passkeys (admin_id);

-- One-time bootstrap tokens (`countersign admin bootstrap`), kept as SHA-256 only.
CREATE TABLE admin_bootstrap_tokens (
    token_hash       BYTEA PRIMARY KEY,
    created_at       TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    used_at          TIMESTAMPTZ,
    used_by          UUID REFERENCES admins (id)
);

-- Invitations of approved new admins: one-time, expiring, kept as SHA-256 only; redeeming one
-- registers the invited admin's first passkey.
CREATE TABLE admin_invitations (
    token_hash       BYTEA PRIMARY KEY,
    admin_id         UUID NOT NULL REFERENCES admins (id),
    created_at       TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    used_at          TIMESTAMPTZ
);

-- WebAuthn ceremonies of the admin plane (bootstrap or invitation registration, sign-in,
-- step-up): single use, expiring, bound by `binding_hash` to the browser (a cookie's SHA-256)
-- or to the session that began them.
CREATE TABLE admin_ceremonies (
    id               UUID PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('register', 'sign_in', 'step_up')),
    admin_id         UUID REFERENCES admins (id),
    binding_hash     BYTEA NOT NULL,
    -- webauthn_rp's server state, sealed under the master key.
    state            BYTEA NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX admin_ceremonies_expires_idx ON admin_ceremonies (expires_at);

-- Sessions: the cookie's value is never stored, only its SHA-256.
CREATE TABLE admin_sessions (
    id_hash              BYTEA PRIMARY KEY,
    admin_id             UUID NOT NULL REFERENCES admins (id),
    created_at           TIMESTAMPTZ NOT NULL,
    last_seen_at         TIMESTAMPTZ NOT NULL,
    idle_expires_at      TIMESTAMPTZ NOT NULL,
    absolute_expires_at  TIMESTAMPTZ NOT NULL,
    -- A fresh passkey assertion, good for the one sensitive action it was taken for
    -- (`step_up_for`: `approve_request:<id>`, `add_passkey`, …) within minutes.
    step_up_for          TEXT,
    step_up_at           TIMESTAMPTZ,
    revoked_at           TIMESTAMPTZ,
    user_agent           TEXT NOT NULL
);
CREATE INDEX admin_sessions_admin_idx ON admin_sessions (admin_id);

-- Four-eyes requests. state: 'pending' → 'approved' → 'applied', or 'rejected', 'cancelled',
-- 'expired'. The database itself refuses an approval by the requester.
CREATE TABLE admin_requests (
    id               UUID PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('grant_role', 'remove_admin', 'fatigue_policy',
                                                   'reset_privileged_factors', 'unfreeze_quarantined')),
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'applied', 'rejected',
                                                    'cancelled', 'expired')),
    requested_by     UUID NOT NULL REFERENCES admins (id),
    requested_at     TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    decided_by       UUID REFERENCES admins (id),
    decided_at       TIMESTAMPTZ,
    applied_at       TIMESTAMPTZ,
    result           TEXT,
    CONSTRAINT admin_requests_four_eyes CHECK (
        state NOT IN ('approved', 'applied', 'rejected')
        OR (decided_by IS NOT NULL AND decided_by <> requested_by))
);
CREATE INDEX admin_requests_state_idx ON admin_requests (state, requested_at);

-- One row whose lock serialises every change to who is an active admin, so two concurrent
-- removals cannot each see three admins and leave one.
CREATE TABLE admin_roster (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL
);
INSERT INTO admin_roster (id, version) VALUES (1, 0);
