-- Audit events are written by the changing transaction into `audit_pending`, sealed with an
-- HMAC under a key the database does not hold, and linked onto the hash chain in batches by the
-- chainer (see the PostgreSQL migration of the same name). `event_id` is unique, so a copied
-- row is refused.
CREATE TABLE audit_pending (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     BLOB NOT NULL UNIQUE,
    occurred_at  INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    details      TEXT NOT NULL,
    mac          BLOB NOT NULL
);

-- Pending events are inserted, then deleted by the chainer once chained; never changed.
CREATE TRIGGER audit_pending_no_update BEFORE UPDATE ON audit_pending
BEGIN
    SELECT RAISE(ABORT, 'audit_pending rows are immutable');
END;
