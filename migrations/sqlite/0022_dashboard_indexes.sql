-- Indexes for the admin dashboard's reads (server/src/store/dashboard.rs), so its pages stay
-- fast with 100,000 users and 1,000,000 challenges. Each names the query it serves.

-- The users under attack now (TROUBLED_USERS, store/fatigue.rs): only troubled standings are
-- indexed, in the list's order. The predicate is the query's, word for word (SQLite uses a
-- partial index only when the query's WHERE contains the index's).
CREATE INDEX user_push_state_troubled_idx ON user_push_state
    (hard_locked DESC, needs_admin_review DESC, needs_strong_factor DESC, consecutive_failures DESC)
    WHERE consecutive_failures > 0 OR frozen_until IS NOT NULL OR needs_strong_factor OR needs_admin_review
    OR hard_locked OR unanswered >= 2 OR under_attack_since IS NOT NULL;

-- Audit search by action and by actor, newest first, paged by seq (the subject has
-- audit_events_subject_idx since 0001).
CREATE INDEX audit_events_action_idx ON audit_events (action, seq);
CREATE INDEX audit_events_actor_idx ON audit_events (actor, seq);

-- Refused prompts over the last 24 h (the chart's refusals per minute and by reason).
CREATE INDEX audit_events_action_time_idx ON audit_events (action, occurred_at);

-- Push prompts per minute over the last 24 h, partial on push prompts (the query's predicate).
CREATE INDEX challenges_push_created_idx ON challenges (created_at) WHERE number_digits > 0;

-- Push delivery health over the last hour: the jobs touched in a time range.
CREATE INDEX push_outbox_updated_idx ON push_outbox (updated_at);

-- The user list: SQLite compares bytewise already, so the unique constraint's index on
-- users.username serves the prefix range; nothing to add.
