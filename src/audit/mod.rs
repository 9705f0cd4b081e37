//! The audit trail: what the engine and its operators intended and what happened, in SQLite,
//! append-only and hash-chained.
//!
//! Each row's hash covers its content and the previous row's hash, so editing or deleting a row
//! breaks every hash after it; the head (last sequence number and hash) is stored beside the rows
//! in the same transaction, so cutting rows off the end is detected too. `palisade audit verify`
//! walks the chain.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{Row, SqlitePool};
use tokio::sync::Mutex;

use crate::state::{StateError, StateStore};

/// The hash the first row chains to.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record, as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// `intent` (before an act), `outcome` (after it), `refused`, `mode`, `approval`, ...
    pub kind: String,
    /// Who: `engine:<name>` or `operator:<user>`.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why, in full: parameters, the detection's title, severity, score and intel hits, the mode.
    #[serde(default)]
    pub details: Value,
}

/// A stored record with its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub recorded_at: String,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact { rows: i64 },
    Broken { seq: i64, problem: String },
}

/// The audit log of one state database. Appends are serialized so the chain stays linear.
#[derive(Debug)]
pub struct AuditLog {
    pool: SqlitePool,
    append: Mutex<()>,
}

/// The text a row's hash covers: every field, in a fixed order, with the previous hash.
fn digest(prev_hash: &str, seq: i64, recorded_at: &str, entry: &AuditEntry) -> String {
    let content = serde_json::json!([
        seq,
        recorded_at,
        entry.kind,
        entry.actor,
        entry.event_id,
        entry.rule,
        entry.playbook,
        entry.step,
        entry.action,
        entry.target,
        entry.status,
        entry.reason,
        entry.details.to_string(),
    ]);
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(content.to_string().as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl AuditLog {
    pub fn new(state: &StateStore) -> AuditLog {
        AuditLog {
            pool: state.pool().clone(),
            append: Mutex::new(()),
        }
    }

    /// Appends entries in one transaction and returns their sequence numbers. When this
    /// returns, they are durable: an intent is on disk before the act it announces.
    pub async fn append(&self, entries: &[AuditEntry]) -> Result<Vec<i64>, StateError> {
        let _turn = self.append.lock().await;
        // IMMEDIATE: this transaction reads the head and then writes; taking the write lock
        // first makes a concurrent writer wait (busy timeout) instead of failing the upgrade.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await?;
        let (mut seq, mut prev) = head.unwrap_or((0, GENESIS.to_string()));
        let mut written = Vec::with_capacity(entries.len());
        let mut rows = Vec::with_capacity(entries.len());
        for entry in entries {
            seq += 1;
            let recorded_at = jiff::Timestamp::now().to_string();
            let hash = digest(&prev, seq, &recorded_at, entry);
            rows.push((seq, recorded_at, entry, prev.clone(), hash.clone()));
            written.push(seq);
            prev = hash;
        }
        // Multi-row INSERTs: one statement per 60 rows (15 columns, under SQLite's variable limit).
        for chunk in rows.chunks(60) {
            let mut insert: sqlx::QueryBuilder<sqlx::Sqlite> = sqlx::QueryBuilder::new(
                "INSERT INTO audit (seq, recorded_at, kind, actor, event_id, rule, playbook, step, action, target, status, reason, details, prev_hash, hash) ",
            );
            insert.push_values(
                chunk,
                |mut row, (seq, recorded_at, entry, prev_hash, hash)| {
                    row.push_bind(*seq)
                        .push_bind(recorded_at.clone())
                        .push_bind(entry.kind.clone())
                        .push_bind(entry.actor.clone())
                        .push_bind(entry.event_id.clone())
                        .push_bind(entry.rule.clone())
                        .push_bind(entry.playbook.clone())
                        .push_bind(entry.step.clone())
                        .push_bind(entry.action.clone())
                        .push_bind(entry.target.clone())
                        .push_bind(entry.status.clone())
                        .push_bind(entry.reason.clone())
                        .push_bind(entry.details.to_string())
                        .push_bind(prev_hash.clone())
                        .push_bind(hash.clone());
                },
            );
            insert.build().execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash")
            .bind(seq)
            .bind(&prev)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(written)
    }

    /// The last `count` records, oldest first.
    pub async fn tail(&self, count: i64) -> Result<Vec<AuditRecord>, StateError> {
        let mut records = self.records(Some(count)).await?;
        records.reverse();
        Ok(records)
    }

    /// Every record, oldest first (newest first and limited when `limit` is given).
    pub async fn records(&self, limit: Option<i64>) -> Result<Vec<AuditRecord>, StateError> {
        let query = match limit {
            Some(_) => "SELECT * FROM audit ORDER BY seq DESC LIMIT ?",
            None => "SELECT * FROM audit ORDER BY seq ASC",
        };
        let mut q = sqlx::query(query);
        if let Some(limit) = limit {
            q = q.bind(limit);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|row| -> Result<AuditRecord, StateError> {
                let details: String = row.try_get("details")?;
                Ok(AuditRecord {
                    seq: row.try_get("seq")?,
                    recorded_at: row.try_get("recorded_at")?,
                    entry: AuditEntry {
                        kind: row.try_get("kind")?,
                        actor: row.try_get("actor")?,
                        event_id: row.try_get("event_id")?,
                        rule: row.try_get("rule")?,
                        playbook: row.try_get("playbook")?,
                        step: row.try_get("step")?,
                        action: row.try_get("action")?,
                        target: row.try_get("target")?,
                        status: row.try_get("status")?,
                        reason: row.try_get("reason")?,
                        details: serde_json::from_str(&details).unwrap_or(Value::String(details)),
                    },
                    prev_hash: row.try_get("prev_hash")?,
                    hash: row.try_get("hash")?,
                })
            })
            .collect()
    }

    /// Walks the chain: every row's hash must match its content and the row before it, the
    /// sequence must have no gaps, and the stored head must be the last row.
    pub async fn verify(&self) -> Result<Verdict, StateError> {
        let records = self.records(None).await?;
        let mut prev = GENESIS.to_string();
        for (expected_seq, record) in (1..).zip(records.iter()) {
            if record.seq != expected_seq {
                return Ok(Verdict::Broken {
                    seq: expected_seq,
                    problem: format!(
                        "row {expected_seq} is missing (the next row is {})",
                        record.seq
                    ),
                });
            }
            if record.prev_hash != prev {
                return Ok(Verdict::Broken {
                    seq: record.seq,
                    problem: "its link to the previous row does not match: a row before it was changed or removed".into(),
                });
            }
            // The stored details text is hashed as written: re-serializing parsed JSON must give
            // the same text, which holds for what `append` wrote.
            let hash = digest(&prev, record.seq, &record.recorded_at, &record.entry);
            if hash != record.hash {
                return Ok(Verdict::Broken {
                    seq: record.seq,
                    problem: "its content does not match its hash: the row was edited".into(),
                });
            }
            prev = record.hash.clone();
        }
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        let last = records.last().map(|r| (r.seq, r.hash.clone()));
        match (head, last) {
            (None, None) => Ok(Verdict::Intact { rows: 0 }),
            (Some(head), Some(last)) if head == last => Ok(Verdict::Intact { rows: last.0 }),
            (Some((seq, _)), _) => Ok(Verdict::Broken {
                seq,
                problem: format!(
                    "the trail ended at row {seq}, but that is not the last row now: rows were removed from the end"
                ),
            }),
            (None, Some(_)) => Ok(Verdict::Broken {
                seq: 1,
                problem: "the head record is missing".into(),
            }),
        }
    }
}

/// `operator:<user>` for commands a person runs.
pub fn operator() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    format!("operator:{user}")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn log() -> (tempfile::TempDir, StateStore, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        let log = AuditLog::new(&state);
        (dir, state, log)
    }

    fn entry(kind: &str, step: &str) -> AuditEntry {
        AuditEntry {
            kind: kind.into(),
            actor: "engine:test".into(),
            step: Some(step.into()),
            details: serde_json::json!({"params": {"pid": "42"}, "score": 0.9}),
            ..AuditEntry::default()
        }
    }

    #[tokio::test]
    async fn an_intact_chain_verifies() {
        let (_dir, _state, log) = log().await;
        assert_eq!(log.verify().await.unwrap(), Verdict::Intact { rows: 0 });
        log.append(&[entry("intent", "kill"), entry("outcome", "kill")])
            .await
            .unwrap();
        log.append(&[entry("intent", "notify")]).await.unwrap();
        assert_eq!(log.verify().await.unwrap(), Verdict::Intact { rows: 3 });
        let tail = log.tail(2).await.unwrap();
        assert_eq!(tail.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(tail[1].prev_hash, tail[0].hash);
    }

    #[tokio::test]
    async fn an_edited_row_breaks_the_chain() {
        let (_dir, state, log) = log().await;
        log.append(&[
            entry("intent", "a"),
            entry("outcome", "a"),
            entry("intent", "b"),
        ])
        .await
        .unwrap();
        sqlx::query("UPDATE audit SET status = 'executed' WHERE seq = 2")
            .execute(state.pool())
            .await
            .unwrap();
        assert!(matches!(
            log.verify().await.unwrap(),
            Verdict::Broken { seq: 2, .. }
        ));
    }

    #[tokio::test]
    async fn deleted_rows_are_found_in_the_middle_and_at_the_end() {
        let (_dir, state, log) = log().await;
        log.append(&[
            entry("intent", "a"),
            entry("outcome", "a"),
            entry("intent", "b"),
        ])
        .await
        .unwrap();
        sqlx::query("DELETE FROM audit WHERE seq = 3")
            .execute(state.pool())
            .await
            .unwrap();
        let verdict = log.verify().await.unwrap();
        assert!(
            matches!(&verdict, Verdict::Broken { problem, .. } if problem.contains("removed from the end")),
            "{verdict:?}"
        );
        sqlx::query("DELETE FROM audit WHERE seq = 1")
            .execute(state.pool())
            .await
            .unwrap();
        assert!(matches!(
            log.verify().await.unwrap(),
            Verdict::Broken { seq: 1, .. }
        ));
    }
}
