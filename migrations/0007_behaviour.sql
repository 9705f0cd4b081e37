-- The behaviour tracker's records: one per event, by event time, kept for the retention period.
CREATE TABLE behaviour (
    ts INTEGER NOT NULL,
    entity TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL
);
CREATE INDEX behaviour_ts ON behaviour (ts);

-- Patterns the tracker already reported, so a restart does not report them again.
CREATE TABLE tracker_reported (
    detector TEXT NOT NULL,
    key TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (detector, key)
);

-- Records per entity, kind and day (UTC): the counts behind `behaviour_count` and the history
-- the first-seen detector requires, without a row per event.
CREATE TABLE behaviour_days (
    entity TEXT NOT NULL,
    kind TEXT NOT NULL,
    day INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (entity, kind, day)
);
