-- Help-desk caller verification (server/src/admin/helpdesk.rs): the agent sends the caller a
-- number-matching push and reads them the number; the challenge's approval is the proof. This
-- row binds the challenge to the agent who started it, so only that agent may act on it (an
-- enrollment link for the verified caller).
CREATE TABLE caller_verifications (
    challenge_id  UUID PRIMARY KEY REFERENCES challenges (id),
    admin_id      UUID NOT NULL REFERENCES admins (id),
    user_id       UUID NOT NULL REFERENCES users (id),
    created_at    TIMESTAMPTZ NOT NULL
);
