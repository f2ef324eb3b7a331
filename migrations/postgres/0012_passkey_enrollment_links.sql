-- Single-use links to the hosted passkey registration page (`/passkeys/enroll?code=…`).
-- A link carries one registration ceremony, begun when the app creates the link (so the trust
-- rule is applied, and an approval consumed, then). The code is kept only as its SHA-256. The
-- row outlives its ceremony (deleted when completed) so that a used link can say so.
CREATE TABLE passkey_enrollment_links (
    code_hash        BYTEA PRIMARY KEY,
    registration_id  UUID NOT NULL,
    user_id          UUID NOT NULL REFERENCES users (id),
    -- The user as named when the link was created (a deleted user's name may be reused).
    username         TEXT NOT NULL,
    app_id           UUID NOT NULL REFERENCES apps (id),
    -- The app that created the link: the actor of what the page does.
    app_name         TEXT NOT NULL,
    -- The creation options (PublicKeyCredentialCreationOptionsJSON) the page passes to the browser.
    options          TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    CONSTRAINT passkey_enrollment_links_registration_key UNIQUE (registration_id)
);
CREATE INDEX passkey_enrollment_links_expires_idx ON passkey_enrollment_links (expires_at);
