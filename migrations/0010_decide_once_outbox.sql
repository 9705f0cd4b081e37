-- Each effect once: a detection is keyed by (event id, rule), a step by (event id, rule,
-- playbook, step). A redelivered event finds its key taken and is not decided again. Rows an
-- earlier version stored twice are removed first, the first one kept.
DELETE FROM detections
 WHERE id NOT IN (SELECT MIN(id) FROM detections GROUP BY event_id, rule);
CREATE UNIQUE INDEX detections_once ON detections (event_id, rule);

DELETE FROM actions
 WHERE id NOT IN (SELECT MIN(id) FROM actions GROUP BY event_id, rule, playbook, step);
CREATE UNIQUE INDEX actions_once ON actions (event_id, rule, playbook, step);

-- Alerts to publish, written in the transaction that stores their steps' outcomes; the
-- publisher sends them in `id` order and marks each published. `alert_id` is the detection's
-- key, carried in the document so a consumer can drop a copy sent twice.
CREATE TABLE alert_outbox (
    id           INTEGER PRIMARY KEY,
    alert_id     TEXT    NOT NULL UNIQUE,
    recorded_at  TEXT    NOT NULL,
    document     TEXT    NOT NULL,
    published_at TEXT
);
CREATE INDEX alert_outbox_unpublished ON alert_outbox (id) WHERE published_at IS NULL;
