//! Steps an earlier run left `dispatched`: handed to the effects pool, and the engine died
//! (SIGKILL, power loss) before their outcome was recorded. A clean stop records the pool's
//! leftovers as `abandoned`; after a crash nobody does, so the row stayed `dispatched`, the
//! audit trail had intent but no outcome, and the detection's alert was never written (a
//! redelivery recognises the detection as decided and does not act again). At start, before
//! the source is read, this settles them.
//!
//! They are never run again: a webhook may have been delivered before the crash.
//!
//! Whose rows: two engines may share a state file, and one of them may still hold a step in its
//! pool. The audit trail names who dispatched each step (`actor`, the stream consumer's name),
//! so a row dispatched under this engine's own name is settled at once (a consumer name is held
//! by one process at a time; the previous holder is gone). A row of another name is settled
//! only once it is older than any living pool could still hold it (see [`Sweep::age_limit`]).

use std::time::Duration;

use serde_json::{Value, json};

use crate::actions::pool::{POOLED_ACTIONS, PoolSettings};
use crate::audit::{AuditEntry, AuditLog};
use crate::metrics::Metrics;
use crate::state::{StateError, StateStore};

/// The reason a step settled here is given.
pub const CRASH_REASON: &str = "abandoned after a crash: the engine stopped while this step was in the effects pool, before its outcome was known; it may or may not have reached its receiver, and it is not run again";

/// One `dispatched` row, with the name that dispatched it according to the audit trail.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Orphan {
    id: i64,
    recorded_at: String,
    event_id: String,
    rule: String,
    playbook: String,
    step: String,
    action: String,
    target: String,
    params: String,
    owner: Option<String>,
}

/// What a sweep is allowed to take.
pub struct Sweep<'a> {
    /// This engine's audit actor (`engine:<consumer>`).
    pub actor: &'a str,
    /// Rows of another actor (or of none) younger than this are left alone.
    pub age_limit: Duration,
}

impl Sweep<'_> {
    /// The longest a step can stay in a living engine's pool: a full queue ahead of it, shared
    /// by the workers, each job under the longest time limit of a pooled family (a family with
    /// no limit of its own uses `default_limit`, `actions.timeout`), then the shutdown wait.
    pub fn age_limit(settings: &PoolSettings, default_limit: Duration) -> Duration {
        let longest = POOLED_ACTIONS
            .iter()
            .map(|action| {
                let family = action.split('.').next().unwrap_or(action);
                settings
                    .time_limits
                    .get(family)
                    .copied()
                    .unwrap_or(default_limit)
            })
            .max()
            .unwrap_or(default_limit);
        let rounds = settings.queue.div_ceil(settings.workers.max(1)) + 1;
        longest
            .saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX))
            .saturating_add(settings.shutdown_wait)
    }

    fn takes(&self, orphan: &Orphan, now: jiff::Timestamp) -> bool {
        if orphan.owner.as_deref() == Some(self.actor) {
            return true;
        }
        let Ok(at) = orphan.recorded_at.parse::<jiff::Timestamp>() else {
            return false;
        };
        let age = now.duration_since(at);
        age.is_positive() && age.unsigned_abs() >= self.age_limit
    }
}

/// Settles the steps an earlier run left `dispatched` (see the module comment); returns how
/// many. The audit trail gets an `abandoned` entry per step first, then the rows and the
/// affected detections' alerts are written in one transaction (an alert whose `alert_id` is
/// already in the outbox is not written again).
pub async fn settle(
    store: &StateStore,
    audit: &AuditLog,
    metrics: &Metrics,
    sweep: &Sweep<'_>,
) -> Result<usize, StateError> {
    // The `actions_status` index makes this cheap when nothing was left, the usual case.
    let mut found: Vec<Orphan> = sqlx::query_as(
        "SELECT id, recorded_at, event_id, rule, playbook, step, action, target, params, NULL AS owner
           FROM actions WHERE status = 'dispatched' ORDER BY id",
    )
    .fetch_all(store.pool())
    .await?;
    if found.is_empty() {
        return Ok(0);
    }
    // Who dispatched each: one pass over the audit trail (it has no index on the event), the
    // last `dispatched` decision of a step naming its owner.
    let events: Vec<&str> = found.iter().map(|o| o.event_id.as_str()).collect();
    let events = serde_json::to_string(&events).map_err(|e| StateError::Failed(e.to_string()))?;
    let decisions: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT event_id, rule, playbook, step, actor FROM audit
          WHERE kind = 'decision' AND status = 'dispatched'
            AND event_id IN (SELECT value FROM json_each(?))
          ORDER BY seq",
    )
    .bind(events)
    .fetch_all(store.pool())
    .await?;
    let mut owners = std::collections::HashMap::new();
    for (event_id, rule, playbook, step, actor) in decisions {
        owners.insert((event_id, rule, playbook, step), actor);
    }
    for orphan in &mut found {
        let key = (
            orphan.event_id.clone(),
            orphan.rule.clone(),
            orphan.playbook.clone(),
            orphan.step.clone(),
        );
        orphan.owner = owners.get(&key).cloned();
    }
    let now = jiff::Timestamp::now();
    let (taken, left): (Vec<Orphan>, Vec<Orphan>) =
        found.into_iter().partition(|o| sweep.takes(o, now));
    if !left.is_empty() {
        tracing::info!(
            steps = left.len(),
            "steps another engine dispatched are left to it (settled at a later start once older than {:?})",
            sweep.age_limit
        );
    }
    if taken.is_empty() {
        return Ok(0);
    }
    // The audit first: a crash between the two writes leaves the rows `dispatched`, and the next
    // start settles them again (an outcome audited twice, never one lost).
    let entries: Vec<AuditEntry> = taken
        .iter()
        .map(|o| AuditEntry {
            kind: "abandoned".into(),
            actor: sweep.actor.to_string(),
            event_id: Some(o.event_id.clone()),
            rule: Some(o.rule.clone()),
            playbook: Some(o.playbook.clone()),
            step: Some(o.step.clone()),
            action: Some(o.action.clone()),
            target: Some(o.target.clone()),
            status: Some("abandoned".into()),
            reason: Some(CRASH_REASON.into()),
            details: json!({"params": parse_params(&o.params)}),
        })
        .collect();
    audit.append(&entries).await?;
    // Another engine may be writing the same file: a locked database is waited out.
    crate::state::transient::retry(
        "settling steps an earlier run left in the effects pool",
        StateError::is_transient,
        || write_settled(store, &taken, now),
    )
    .await?;
    for orphan in &taken {
        tracing::warn!(
            "step `{}` of playbook `{}` ({} to `{}`): {CRASH_REASON}",
            orphan.step,
            orphan.playbook,
            orphan.action,
            orphan.target
        );
        metrics.action(&orphan.action, "abandoned");
    }
    metrics.effects_abandoned(taken.len() as u64);
    tracing::info!(
        steps = taken.len(),
        "settled steps an earlier run left in the effects pool as abandoned"
    );
    Ok(taken.len())
}

/// The rows of the steps taken, `abandoned`, and their detections' alerts, in one
/// `BEGIN IMMEDIATE` transaction (so it waits for, rather than races, another writer).
async fn write_settled(
    store: &StateStore,
    taken: &[Orphan],
    now: jiff::Timestamp,
) -> Result<(), StateError> {
    // This process's other writers wait their turn here rather than in SQLite's busy handler.
    let _turn = store.write_turn().take().await;
    let mut conn = store.pool().acquire().await?;
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
    for orphan in taken {
        sqlx::query(
            "UPDATE actions SET status = 'abandoned', reason = ? WHERE id = ? AND status = 'dispatched'",
        )
        .bind(CRASH_REASON)
        .bind(orphan.id)
        .execute(&mut *tx)
        .await?;
    }
    let mut detections: Vec<(&str, &str)> = taken
        .iter()
        .map(|o| (o.event_id.as_str(), o.rule.as_str()))
        .collect();
    detections.sort_unstable();
    detections.dedup();
    let recorded = now.to_string();
    for (event_id, rule) in detections {
        let Some(document) = alert_document(&mut tx, event_id, rule).await? else {
            continue;
        };
        sqlx::query(
            "INSERT INTO alert_outbox (alert_id, recorded_at, document) VALUES (?, ?, ?)
             ON CONFLICT (alert_id) DO NOTHING",
        )
        .bind(format!("{rule}@{event_id}"))
        .bind(&recorded)
        .bind(document.to_string())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

fn parse_params(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// The detection's alert, from its stored row and every step's stored status, in the shape
/// [`crate::engine::alert`] gives it. The stored row keeps no tags, intel hits or attribution,
/// so those are absent. `None` when the detection row is missing.
async fn alert_document(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    event_id: &str,
    rule: &str,
) -> Result<Option<Value>, StateError> {
    type Row = (
        String,
        Option<String>,
        String,
        String,
        String,
        Option<String>,
        Option<f64>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT event_time, host, stage, severity, title, entity, score
           FROM detections WHERE event_id = ? AND rule = ? ORDER BY id LIMIT 1",
    )
    .bind(event_id)
    .bind(rule)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((event_time, host, stage, severity, title, entity, score)) = row else {
        return Ok(None);
    };
    type Step = (
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        String,
        String,
    );
    let steps: Vec<Step> = sqlx::query_as(
        "SELECT playbook, step, action, target, status, reason, risk, params
           FROM actions WHERE event_id = ? AND rule = ? ORDER BY id",
    )
    .bind(event_id)
    .bind(rule)
    .fetch_all(&mut **tx)
    .await?;
    let mut alert = json!({
        "kind": "alert",
        "event_id": event_id,
        "rule": rule,
        "severity": severity,
        "title": title,
        "stage": stage,
        "tags": [],
        "alert_id": format!("{rule}@{event_id}"),
        "host": host,
        "timestamp": event_time,
        "level": severity.to_uppercase(),
    });
    if let Some(entity) = entity
        .as_deref()
        .and_then(|e| serde_json::from_str::<Value>(e).ok())
    {
        if entity["kind"] == "process"
            && let Some(pid) = entity.get("pid")
        {
            alert["actionable_pid"] = pid.clone();
        }
        alert["entity"] = entity;
    }
    if let Some(score) = score {
        alert["score"] = json!(score);
    }
    alert["actions"] = Value::Array(
        steps
            .into_iter()
            .map(
                |(playbook, step, action, target, status, reason, risk, params)| {
                    let mut line = json!({
                        "kind": "action",
                        "event_id": event_id,
                        "playbook": playbook,
                        "step": step,
                        "action": action,
                        "target": target,
                        "status": status,
                        "risk": risk,
                        "rule": rule,
                        "params": parse_params(&params),
                    });
                    if let Some(reason) = reason {
                        line["reason"] = json!(reason);
                    }
                    line
                },
            )
            .collect(),
    );
    Ok(Some(alert))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditFiles;

    /// A state file with one detection whose `tell` step engine `engine:a` dispatched, as a
    /// killed engine leaves it.
    async fn left_dispatched(dir: &std::path::Path) -> (StateStore, AuditLog) {
        let path = dir.join("state.db");
        let store = StateStore::open(&path).await.unwrap();
        let audit = AuditLog::open(&store, &AuditFiles::beside(&path))
            .await
            .unwrap();
        let now = jiff::Timestamp::now().to_string();
        sqlx::query(
            "INSERT INTO detections (recorded_at, event_id, event_time, host, rule, stage, severity, title, entity)
             VALUES (?, 'e1', '2025-11-03T14:30:10Z', 'ws-1', 'r1', 'rule', 'high', 'Seen', '{\"kind\":\"process\",\"pid\":42}')",
        )
        .bind(&now)
        .execute(store.pool())
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO actions (recorded_at, event_id, rule, playbook, step, action, target, status, reason, risk, params)
             VALUES (?, 'e1', 'r1', 'p1', 'tell', 'notify.webhook', 'http://x/hook', 'dispatched', 'handed to the effects pool', 'low', '{\"url\":\"http://x/hook\"}')",
        )
        .bind(&now)
        .execute(store.pool())
        .await
        .unwrap();
        audit
            .append(&[AuditEntry {
                kind: "decision".into(),
                actor: "engine:a".into(),
                event_id: Some("e1".into()),
                rule: Some("r1".into()),
                playbook: Some("p1".into()),
                step: Some("tell".into()),
                action: Some("notify.webhook".into()),
                target: Some("http://x/hook".into()),
                status: Some("dispatched".into()),
                reason: None,
                details: json!({}),
            }])
            .await
            .unwrap();
        (store, audit)
    }

    async fn status(store: &StateStore) -> String {
        sqlx::query_scalar("SELECT status FROM actions WHERE step = 'tell'")
            .fetch_one(store.pool())
            .await
            .unwrap()
    }

    async fn outbox(store: &StateStore) -> Vec<(String, String)> {
        sqlx::query_as("SELECT alert_id, document FROM alert_outbox")
            .fetch_all(store.pool())
            .await
            .unwrap()
    }

    /// Defect (issue 14): settling a crashed run's steps must not take a step another engine
    /// sharing the state file still holds in its pool. A young row dispatched under another name
    /// is left alone; the same row is taken by its own name, or by anyone once older than the
    /// age limit. The alert is written once however often the sweep runs.
    #[tokio::test]
    async fn a_crash_while_a_step_is_in_the_effects_pool_is_settled_only_by_its_owner_or_once_old()
    {
        let dir = tempfile::tempdir().unwrap();
        let (store, audit) = left_dispatched(dir.path()).await;
        let metrics = Metrics::default();
        let other = Sweep {
            actor: "engine:b",
            age_limit: Duration::from_secs(3600),
        };
        assert_eq!(settle(&store, &audit, &metrics, &other).await.unwrap(), 0);
        assert_eq!(status(&store).await, "dispatched");
        assert!(outbox(&store).await.is_empty());

        let owner = Sweep {
            actor: "engine:a",
            age_limit: Duration::from_secs(3600),
        };
        assert_eq!(settle(&store, &audit, &metrics, &owner).await.unwrap(), 1);
        assert_eq!(status(&store).await, "abandoned");
        let alerts = outbox(&store).await;
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].0, "r1@e1");
        let document: Value = serde_json::from_str(&alerts[0].1).unwrap();
        assert_eq!(document["actions"][0]["status"], "abandoned");
        assert_eq!(document["actions"][0]["reason"], CRASH_REASON);
        assert_eq!(document["actionable_pid"], 42);
        assert_eq!(document["level"], "HIGH");
        let audited: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit WHERE kind = 'abandoned' AND event_id = 'e1' AND actor = 'engine:a'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(audited, 1);
        assert!(
            metrics
                .render()
                .contains("palisade_effects_abandoned_total 1")
        );

        // Set back by hand, as if the audit append and the row update were split by a crash:
        // the next sweep settles the row again but does not write a second alert.
        sqlx::query("UPDATE actions SET status = 'dispatched'")
            .execute(store.pool())
            .await
            .unwrap();
        let old = Sweep {
            actor: "engine:c",
            age_limit: Duration::ZERO,
        };
        assert_eq!(settle(&store, &audit, &metrics, &old).await.unwrap(), 1);
        assert_eq!(status(&store).await, "abandoned");
        assert_eq!(outbox(&store).await.len(), 1);
    }

    #[test]
    fn the_age_limit_covers_a_full_queue_and_the_shutdown_wait() {
        let settings = PoolSettings {
            workers: 4,
            queue: 8,
            time_limits: std::collections::HashMap::from([(
                "notify".to_string(),
                Duration::from_secs(20),
            )]),
            shutdown_wait: Duration::from_secs(10),
        };
        // Two rounds of the queue, the job's own round, then the wait.
        assert_eq!(
            Sweep::age_limit(&settings, Duration::from_secs(30)),
            Duration::from_secs(3 * 20 + 10)
        );
        // Without a `notify` limit, pooled steps run under `actions.timeout`.
        let settings = PoolSettings {
            time_limits: std::collections::HashMap::new(),
            ..settings
        };
        assert_eq!(
            Sweep::age_limit(&settings, Duration::from_secs(30)),
            Duration::from_secs(3 * 30 + 10)
        );
    }
}
