-- The audit trail: append-only, each row chained to the one before by a SHA-256 hash, so an
-- edited or deleted row breaks the chain. `audit_head` is updated in the same transaction as
-- every append, so removing rows from the end is detected too.
CREATE TABLE audit (
    seq         INTEGER PRIMARY KEY,
    recorded_at TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    event_id    TEXT,
    rule        TEXT,
    playbook    TEXT,
    step        TEXT,
    action      TEXT,
    target      TEXT,
    status      TEXT,
    reason      TEXT,
    details     TEXT    NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
);
