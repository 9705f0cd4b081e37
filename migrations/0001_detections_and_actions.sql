-- What the engine decided, kept so an operator can see it after the fact.
CREATE TABLE detections (
    id          INTEGER PRIMARY KEY,
    recorded_at TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    event_time  TEXT    NOT NULL,
    host        TEXT,
    rule        TEXT    NOT NULL,
    stage       TEXT    NOT NULL,
    severity    TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    entity      TEXT,            -- JSON
    score       REAL
);
CREATE INDEX detections_event ON detections (event_id);
CREATE INDEX detections_rule ON detections (rule, recorded_at);

CREATE TABLE actions (
    id          INTEGER PRIMARY KEY,
    recorded_at TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    rule        TEXT    NOT NULL,
    playbook    TEXT    NOT NULL,
    step        TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    reason      TEXT,
    risk        TEXT    NOT NULL,
    params      TEXT    NOT NULL  -- JSON
);
CREATE INDEX actions_event ON actions (event_id);
CREATE INDEX actions_status ON actions (status, recorded_at);
