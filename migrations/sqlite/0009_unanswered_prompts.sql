-- Unanswered prompts in a row and the current attack incident (see the PostgreSQL migration of
-- the same name).
ALTER TABLE user_push_state ADD COLUMN unanswered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE user_push_state ADD COLUMN refused_prompts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE user_push_state ADD COLUMN under_attack_since INTEGER;
ALTER TABLE user_push_state ADD COLUMN last_refused_at INTEGER;
