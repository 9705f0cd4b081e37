//! Approvals and the engine's mode: the two ways a person stays in charge.
//!
//! Steps with `risk: high` (unless their playbook opts out), and every step while the engine is
//! in manual mode, wait here for a person. Approvals expire; an expired one counts as not done.
//! The mode is kept in the state database, so a manual engine stays manual across restarts
//! until someone runs `palisade mode auto`. Operator commands change these tables directly: the
//! database is in WAL mode, so they work while the engine runs (docs/actions.md says why this
//! and not a socket).

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::{FromRow, SqlitePool};

use crate::audit::AuditEntry;
use crate::decision::ActionRecord;
use crate::state::{StateError, StateStore};

pub mod operator;

/// Whether the engine acts by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Auto,
    Manual,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Manual => "manual",
        }
    }
}

/// The current mode and how it came to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModeState {
    pub mode: Mode,
    pub since_ms: i64,
    pub changed_by: String,
    pub reason: String,
}

/// One waiting (or decided) step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct Approval {
    pub id: i64,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub status: String,
    pub waits_because: String,
    pub event_id: String,
    pub event_time_ms: i64,
    pub rule: String,
    pub playbook: String,
    pub step: String,
    pub action: String,
    pub target: String,
    pub risk: String,
    pub params: String,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    pub result: Option<String>,
}

impl Approval {
    pub fn params(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.params).unwrap_or_default()
    }

    /// The audit row for something that happened to this approval: a person's decision or its
    /// expiry. One place builds it so every such row names the same event, rule and step.
    pub fn audit_entry(&self, kind: &str, actor: &str, status: &str, reason: String) -> AuditEntry {
        AuditEntry {
            kind: kind.into(),
            actor: actor.into(),
            event_id: Some(self.event_id.clone()),
            rule: Some(self.rule.clone()),
            playbook: Some(self.playbook.clone()),
            step: Some(self.step.clone()),
            action: Some(self.action.clone()),
            target: Some(self.target.clone()),
            status: Some(status.into()),
            reason: Some(reason),
            details: serde_json::json!({"params": self.params()}),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Approvals {
    pool: SqlitePool,
    turn: crate::state::WriteTurn,
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Why a person's decision on an approval was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionRefused {
    #[error("there is no approval {0}")]
    NoSuchApproval(i64),
    #[error("approval {0} expired; it counts as not done")]
    Expired(i64),
    #[error("approval {id} is already {status}")]
    AlreadyDecided { id: i64, status: String },
}

impl Approvals {
    pub fn new(state: &StateStore) -> Approvals {
        Approvals {
            pool: state.pool().clone(),
            turn: state.write_turn().clone(),
        }
    }

    /// Queues a step; returns its approval id.
    pub async fn queue(
        &self,
        action: &ActionRecord,
        event_time_ms: i64,
        waits_because: &str,
        expires_after_ms: i64,
    ) -> Result<i64, StateError> {
        let now = now_ms();
        let _turn = self.turn.take().await;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO approvals (created_ms, expires_ms, status, waits_because, event_id, event_time_ms, rule, playbook, step, action, target, risk, params) \
             VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(now)
        .bind(now + expires_after_ms)
        .bind(waits_because)
        .bind(&action.event_id)
        .bind(event_time_ms)
        .bind(action.rule.to_string())
        .bind(action.playbook.to_string())
        .bind(&action.step)
        .bind(action.action)
        .bind(&action.target)
        .bind(serde_json::to_value(action.risk).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
        .bind(serde_json::to_string(&action.params).unwrap_or_else(|_| "{}".into()))
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Approvals in `status` (all when `None`), newest first.
    pub async fn list(&self, status: Option<&str>) -> Result<Vec<Approval>, StateError> {
        let rows = match status {
            Some(status) => {
                sqlx::query_as("SELECT * FROM approvals WHERE status = ? ORDER BY id DESC")
                    .bind(status)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query_as("SELECT * FROM approvals ORDER BY id DESC")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows)
    }

    /// A person's decision on a pending approval. The inner error names what is wrong with the
    /// decision (no such id, not pending, expired); the outer one, the database.
    pub async fn decide(
        &self,
        id: i64,
        approve: bool,
        by: &str,
    ) -> Result<Result<Approval, DecisionRefused>, StateError> {
        let _turn = self.turn.take().await;
        let now = now_ms();
        let status = if approve { "approved" } else { "rejected" };
        let updated = sqlx::query("UPDATE approvals SET status = ?, decided_by = ?, decided_ms = ? WHERE id = ? AND status = 'pending' AND expires_ms > ?")
            .bind(status)
            .bind(by)
            .bind(now)
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let row: Option<Approval> = sqlx::query_as("SELECT * FROM approvals WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match (updated, row) {
            (1, Some(row)) => Ok(row),
            (_, None) => Err(DecisionRefused::NoSuchApproval(id)),
            (_, Some(row)) if row.status == "pending" => Err(DecisionRefused::Expired(id)),
            (_, Some(row)) => Err(DecisionRefused::AlreadyDecided {
                id,
                status: row.status,
            }),
        })
    }

    /// Marks pending approvals past their expiry as expired and returns them.
    pub async fn expire(&self) -> Result<Vec<Approval>, StateError> {
        let _turn = self.turn.take().await;
        let now = now_ms();
        let rows: Vec<Approval> = sqlx::query_as("UPDATE approvals SET status = 'expired', decided_ms = ? WHERE status = 'pending' AND expires_ms <= ? RETURNING *")
            .bind(now)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    /// Claims approved steps for execution (so two engines never run the same one).
    pub async fn take_approved(&self) -> Result<Vec<Approval>, StateError> {
        let _turn = self.turn.take().await;
        let rows: Vec<Approval> = sqlx::query_as(
            "UPDATE approvals SET status = 'executing' WHERE status = 'approved' RETURNING *",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    pub async fn finish(
        &self,
        id: i64,
        status: &str,
        result: Option<&str>,
    ) -> Result<(), StateError> {
        let _turn = self.turn.take().await;
        sqlx::query("UPDATE approvals SET status = ?, result = ? WHERE id = ?")
            .bind(status)
            .bind(result)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn mode(&self) -> Result<ModeState, StateError> {
        let row: Option<(String, i64, String, String)> = sqlx::query_as(
            "SELECT mode, since_ms, changed_by, reason FROM engine_mode WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some((mode, since_ms, changed_by, reason)) => ModeState {
                mode: if mode == "manual" {
                    Mode::Manual
                } else {
                    Mode::Auto
                },
                since_ms,
                changed_by,
                reason,
            },
            None => ModeState {
                mode: Mode::Auto,
                since_ms: 0,
                changed_by: "default".into(),
                reason: "never changed".into(),
            },
        })
    }

    pub async fn set_mode(&self, mode: Mode, by: &str, reason: &str) -> Result<(), StateError> {
        let _turn = self.turn.take().await;
        sqlx::query(
            "INSERT INTO engine_mode (id, mode, since_ms, changed_by, reason) VALUES (1, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET mode = excluded.mode, since_ms = excluded.since_ms, changed_by = excluded.changed_by, reason = excluded.reason",
        )
        .bind(mode.as_str())
        .bind(now_ms())
        .bind(by)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{ActionStatus, Risk};

    fn record() -> ActionRecord {
        ActionRecord {
            event_id: "e1".into(),
            playbook: std::sync::Arc::from("p"),
            step: "kill".into(),
            action: "process.kill",
            target: "42".into(),
            status: ActionStatus::Queued,
            reason: None,
            risk: Risk::High,
            rule: std::sync::Arc::from("r"),
            params: BTreeMap::from([("pid", crate::decision::ParamValue::Pid(42))]),
            on_failure: crate::decision::OnFailure::Abort,
            notification_limit: None,
        }
    }

    #[tokio::test]
    async fn approvals_are_decided_once_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateStore::open(&dir.path().join("s.db")).await.unwrap();
        let approvals = Approvals::new(&state);
        let id = approvals
            .queue(&record(), 0, "high risk", 3_600_000)
            .await
            .unwrap();
        assert_eq!(approvals.list(Some("pending")).await.unwrap().len(), 1);
        let decided = approvals
            .decide(id, true, "operator:alice")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (decided.status.as_str(), decided.decided_by.as_deref()),
            ("approved", Some("operator:alice"))
        );
        assert!(
            approvals
                .decide(id, false, "operator:bob")
                .await
                .unwrap()
                .unwrap_err()
                .to_string()
                .contains("already approved")
        );
        assert_eq!(approvals.take_approved().await.unwrap().len(), 1);
        assert!(
            approvals.take_approved().await.unwrap().is_empty(),
            "a step is taken once"
        );

        let stale = approvals
            .queue(&record(), 0, "high risk", -1)
            .await
            .unwrap();
        assert_eq!(approvals.expire().await.unwrap().len(), 1);
        assert!(
            approvals
                .decide(stale, true, "operator:alice")
                .await
                .unwrap()
                .unwrap_err()
                .to_string()
                .contains("already expired")
        );
        assert!(
            approvals
                .decide(999, true, "x")
                .await
                .unwrap()
                .unwrap_err()
                .to_string()
                .contains("no approval 999")
        );
    }

    #[tokio::test]
    async fn the_mode_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let state = StateStore::open(&path).await.unwrap();
        assert_eq!(
            Approvals::new(&state).mode().await.unwrap().mode,
            Mode::Auto
        );
        Approvals::new(&state)
            .set_mode(Mode::Manual, "engine:x", "5 failures")
            .await
            .unwrap();
        state.close().await;
        let reopened = StateStore::open(&path).await.unwrap();
        let mode = Approvals::new(&reopened).mode().await.unwrap();
        assert_eq!(
            (mode.mode, mode.reason.as_str()),
            (Mode::Manual, "5 failures")
        );
    }
}
