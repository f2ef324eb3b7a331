-- The fatigue policy as changed at run time by a four-eyes request (server/src/fatigue/policy.rs).
-- At most one row; when it is absent the config file's policy applies. `settings` is the
-- policy as JSON (durations in whole seconds), `version` counts the changes.
CREATE TABLE fatigue_policy (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    version             BIGINT NOT NULL,
    settings            TEXT NOT NULL,
    changed_by_request  UUID NOT NULL REFERENCES admin_requests (id),
    changed_at          TIMESTAMPTZ NOT NULL
);
