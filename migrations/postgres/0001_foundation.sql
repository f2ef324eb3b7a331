-- Apps, users and the audit trail. Timestamps are timestamptz (microseconds).

CREATE TABLE apps (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    key_hash    BYTEA NOT NULL,
    scopes      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ,
    CONSTRAINT apps_name_key UNIQUE (name),
    CONSTRAINT apps_key_id_key UNIQUE (key_id)
);

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    username      TEXT NOT NULL,
    display_name  TEXT,
    is_privileged BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT users_username_key UNIQUE (username)
);

-- Hash-chained, append-only. `details` is the exact JSON text that was hashed.
CREATE TABLE audit_events (
    seq          BIGINT PRIMARY KEY CHECK (seq > 0),
    occurred_at  TIMESTAMPTZ NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    details      TEXT NOT NULL,
    prev_hash    BYTEA NOT NULL,
    hash         BYTEA NOT NULL
);
CREATE INDEX audit_events_subject_idx ON audit_events (subject, seq);

-- The sealed head of the chain: one row, updated in every appending transaction. The first
-- UPDATE of an append takes its row lock, which serialises appends across instances.
CREATE TABLE audit_head (
    id    SMALLINT PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    mac   BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, 0, decode(repeat('00', 32), 'hex'), ''::bytea);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END
$$;
CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
