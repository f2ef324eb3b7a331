-- Apps, users and the audit trail. Timestamps are INTEGER microseconds since the Unix epoch
-- (TEXT timestamps of varying precision do not sort); UUIDs are TEXT.

CREATE TABLE apps (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    key_hash    BLOB NOT NULL,
    scopes      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    CONSTRAINT apps_name_key UNIQUE (name),
    CONSTRAINT apps_key_id_key UNIQUE (key_id)
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    display_name  TEXT,
    is_privileged INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    CONSTRAINT users_username_key UNIQUE (username)
);

CREATE TABLE audit_events (
    seq          INTEGER PRIMARY KEY CHECK (seq > 0),
    occurred_at  INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    details      TEXT NOT NULL,
    prev_hash    BLOB NOT NULL,
    hash         BLOB NOT NULL
);
CREATE INDEX audit_events_subject_idx ON audit_events (subject, seq);

CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    mac   BLOB NOT NULL
);
INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, 0, zeroblob(32), x'');

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
