-- Help-desk caller verification; see the PostgreSQL migration of the same name.
CREATE TABLE caller_verifications (
    challenge_id  TEXT PRIMARY KEY REFERENCES challenges (id),
    admin_id      TEXT NOT NULL REFERENCES admins (id),
    user_id       TEXT NOT NULL REFERENCES users (id),
    created_at    INTEGER NOT NULL
);
