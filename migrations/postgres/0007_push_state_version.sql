-- A version on each user's push standing, bumped by every change to it: a device answer reads
-- the standing, computes the ladder move, and applies it in one statement only if the standing
-- is still that version (no transaction held across round trips).
ALTER TABLE user_push_state ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
