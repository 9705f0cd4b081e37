-- How far each extra alert sink (Elasticsearch) has read the alert outbox: the id of the last
-- row it delivered or gave up on. It reads on from there after a restart, so no alert is lost
-- and none is sent twice by the sink's own doing.
CREATE TABLE sink_cursors (
    sink    TEXT    PRIMARY KEY,
    last_id INTEGER NOT NULL
);
