-- Sigma correlation windows: one row per (correlation, group-by values), so a restart continues
-- counting where the engine stopped. `fingerprint` says what the window counted; a window is
-- restored only into a correlation that still counts the same thing the same way.
CREATE TABLE correlation_windows (
    correlation TEXT NOT NULL,
    group_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (correlation, group_key)
);
