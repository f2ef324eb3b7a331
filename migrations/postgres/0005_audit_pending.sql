-- Audit events are written by the changing transaction into `audit_pending`, sealed with an
-- HMAC under a key the database does not hold, and linked onto the hash chain in batches by a
-- chainer that holds the `audit_head` row lock. Changes no longer queue behind one another on
-- that lock, whatever the commit latency. `event_id` is unique, so a copied row is refused.
CREATE TABLE audit_pending (
    id           BIGSERIAL PRIMARY KEY,
    event_id     BYTEA NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    details      TEXT NOT NULL,
    mac          BYTEA NOT NULL,
    CONSTRAINT audit_pending_event_id_key UNIQUE (event_id)
);

-- Pending events are inserted, then deleted by the chainer once chained; never changed.
CREATE FUNCTION audit_pending_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_pending rows are immutable';
END
$$;
CREATE TRIGGER audit_pending_no_update BEFORE UPDATE ON audit_pending
    FOR EACH ROW EXECUTE FUNCTION audit_pending_immutable();
