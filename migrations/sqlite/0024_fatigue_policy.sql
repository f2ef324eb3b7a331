-- The run-time fatigue policy; see the PostgreSQL migration of the same name.
CREATE TABLE fatigue_policy (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    version             INTEGER NOT NULL,
    settings            TEXT NOT NULL,
    changed_by_request  TEXT NOT NULL REFERENCES admin_requests (id),
    changed_at          INTEGER NOT NULL
);
