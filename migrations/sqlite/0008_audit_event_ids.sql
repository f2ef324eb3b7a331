-- Every audit event keeps the unique id it was sealed with while pending (see the PostgreSQL
-- migration of the same name). The server seals the genesis head when it applies this
-- migration to a trail that is still empty.
ALTER TABLE audit_events ADD COLUMN event_id BLOB;
CREATE UNIQUE INDEX audit_events_event_id_key ON audit_events (event_id);
