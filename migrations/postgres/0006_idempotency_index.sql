-- The idempotency constraint becomes a partial unique index over the challenges that have a key.
-- It is smaller, and a conditional UPDATE `WHERE id = $1 AND app_id = $2 ...` can no longer be
-- planned (on a table without statistics yet) as a scan of every challenge of the app through
-- the (app_id, idempotency_key) index: that plan made redeem and cancel grow with history.
ALTER TABLE challenges DROP CONSTRAINT challenges_idempotency_key;
CREATE UNIQUE INDEX challenges_idempotency_key ON challenges (app_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
