-- The anomaly stage's learning (docs/anomaly.md#learning): a bounded sample of the deployment's
-- own events, how far learning has come, and the models trained from the sample.
--
-- Sample rows belong to one engine's reservoir (`engine`, `bucket`, `slot`); engines that share
-- this file each keep their own reservoir, and training reads all of them.
CREATE TABLE anomaly_sample (
    engine TEXT NOT NULL,
    -- event kind, host and hour of day: `process_create|ws-01|14`
    bucket TEXT NOT NULL,
    slot INTEGER NOT NULL,
    -- events the bucket had seen when this row was written (reservoir sampling restarts from it)
    seen INTEGER NOT NULL,
    -- event time, milliseconds since the epoch (the sliding window prunes by it)
    ts INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (engine, bucket, slot)
);
CREATE INDEX anomaly_sample_ts ON anomaly_sample (ts);

-- Per engine: events offered to the sample (not flagged by rules, intel or the model), and the
-- first and newest event times among them.
CREATE TABLE anomaly_progress (
    engine TEXT PRIMARY KEY,
    events INTEGER NOT NULL,
    first_ts INTEGER NOT NULL,
    newest_ts INTEGER NOT NULL
);

-- Every model trained inside an engine. `status`: `active` (scored with; the newest active row
-- is the model), `held` (its alert rate on recent normal events jumped; waits for
-- `palisade model accept`), `superseded` (a held model a later training replaced), `unreadable`
-- (a model this build cannot read, set aside).
CREATE TABLE anomaly_models (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trained_at TEXT NOT NULL,
    trained_by TEXT NOT NULL,
    status TEXT NOT NULL,
    sample_events INTEGER NOT NULL,
    -- share of held-out sample events at or above the threshold
    held_out_rate REAL NOT NULL,
    -- the same on the held-out events of the newest day, for this model and the one before it
    recent_rate REAL NOT NULL,
    previous_rate REAL,
    accepted_by TEXT,
    model TEXT NOT NULL
);

-- One engine trains at a time, across engines sharing this file.
CREATE TABLE anomaly_training_lock (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    until_ms INTEGER NOT NULL
);
