-- Addresses palisade blocked, so blocks survive a restart (re-asserted at start-up with the
-- time they have left) and can be undone by `palisade unblock`.
CREATE TABLE blocks (
    address    TEXT    NOT NULL,
    direction  TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    reason     TEXT,
    removed_ms INTEGER,
    PRIMARY KEY (address, direction)
);
