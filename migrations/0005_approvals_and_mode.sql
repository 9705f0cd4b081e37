-- Steps waiting for a person: high-risk steps, and every step while the engine is in manual
-- mode. A running engine executes approved ones and expires stale ones.
CREATE TABLE approvals (
    id            INTEGER PRIMARY KEY,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL,
    status        TEXT    NOT NULL,   -- pending, approved, rejected, expired, executed, failed, refused, skipped
    waits_because TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    event_time_ms INTEGER NOT NULL,
    rule          TEXT    NOT NULL,
    playbook      TEXT    NOT NULL,
    step          TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    target        TEXT    NOT NULL,
    risk          TEXT    NOT NULL,
    params        TEXT    NOT NULL,   -- JSON object of rendered parameters
    decided_by    TEXT,
    decided_ms    INTEGER,
    result        TEXT
);
CREATE INDEX approvals_status ON approvals (status, expires_ms);

-- Automatic or manual; survives restarts. Manual until a person says otherwise.
CREATE TABLE engine_mode (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    mode     TEXT    NOT NULL,
    since_ms INTEGER NOT NULL,
    changed_by TEXT  NOT NULL,
    reason   TEXT    NOT NULL
);
