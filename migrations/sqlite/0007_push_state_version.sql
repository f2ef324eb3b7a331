-- A version on each user's push standing (see the PostgreSQL migration of the same name).
-- SQLite serialises writers, so it only keeps the schemas alike.
ALTER TABLE user_push_state ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
