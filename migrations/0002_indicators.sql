-- Threat intelligence: one row per (indicator, source), so each source keeps its own
-- confidence and lifetime, and a source's update or revocation touches only its rows.
CREATE TABLE indicators (
    kind           TEXT    NOT NULL,
    value          TEXT    NOT NULL,
    source         TEXT    NOT NULL,
    confidence     INTEGER NOT NULL,
    severity       INTEGER NOT NULL,
    tags           TEXT    NOT NULL,  -- JSON array
    threat         TEXT,
    first_seen_ms  INTEGER,
    last_seen_ms   INTEGER,
    valid_until_ms INTEGER,
    reference      TEXT,
    subdomains     INTEGER NOT NULL,
    revoked        INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL,
    PRIMARY KEY (kind, value, source)
) WITHOUT ROWID;
-- No secondary index: lookups go by (kind, value), the primary key's prefix, and per-source
-- counts scan; each extra index measured as a large share of import time.
