-- Where each pulled feed left off, and whether its last pull worked.
CREATE TABLE feed_state (
    name            TEXT PRIMARY KEY,
    cursor          TEXT,     -- TAXII added_after, MISP attribute timestamp
    etag            TEXT,
    last_modified   TEXT,
    last_success_ms INTEGER,
    last_attempt_ms INTEGER,
    last_error      TEXT
);
