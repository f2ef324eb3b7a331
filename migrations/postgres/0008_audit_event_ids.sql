-- Every audit event keeps the unique id it was sealed with while pending, so a captured
-- pending event inserted again after it was chained is refused (the chainer checks, the index
-- refuses). Ids are hashed into the chain (v2 events); events chained before this migration
-- have none. The server also seals the genesis head when it applies this migration to a trail
-- that is still empty: from here on an unsealed head is a break, never "no events yet".
ALTER TABLE audit_events ADD COLUMN event_id BYTEA;
CREATE UNIQUE INDEX audit_events_event_id_key ON audit_events (event_id);
