-- Prompts nobody answers and prompts refused are attack signals (cancel-and-retry bombing,
-- bursts against the budget): the standing counts unanswered prompts in a row and the current
-- attack incident (refused prompts, when it began, the last refusal).
ALTER TABLE user_push_state
    ADD COLUMN unanswered INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN refused_prompts INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN under_attack_since TIMESTAMPTZ,
    ADD COLUMN last_refused_at TIMESTAMPTZ;
