//! `palisade approvals list | approve ID | reject ID` and `palisade mode [auto|manual]`: a person
//! in charge of a running engine. They change the state database directly; the engine reads it
//! (WAL mode lets both work at once).

use std::path::Path;

use crate::approvals::{Approvals, Mode};
use crate::audit::{AuditEntry, AuditLog, operator};
use crate::content::display_path;
use crate::state::StateStore;

use super::{CannotRun, Status, load_content};

/// The state database of `dir`, which must exist: these commands act on what an engine did.
fn state_path(dir: &Path) -> Result<std::path::PathBuf, CannotRun> {
    let path = match load_content(dir, None)? {
        Ok(content) => content.resolve(&content.config.state.path),
        Err(_) => display_path(dir, &crate::config::Config::default().state.path),
    };
    if !path.exists() {
        return Err(CannotRun(format!(
            "no state database at `{}`: the engine has not run there",
            path.display()
        )));
    }
    Ok(path)
}

fn with_state<T>(
    dir: &Path,
    work: impl AsyncFnOnce(&StateStore) -> Result<T, CannotRun>,
) -> Result<T, CannotRun> {
    let path = state_path(dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let state = StateStore::open(&path).await?;
        let result = work(&state).await;
        state.close().await;
        result
    })
}

fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

pub fn list(dir: &Path, all: bool) -> Result<Status, CannotRun> {
    with_state(dir, async |state| {
        let approvals = Approvals::new(state);
        approvals.expire().await?;
        let rows = approvals
            .list(if all { None } else { Some("pending") })
            .await?;
        if rows.is_empty() {
            println!(
                "{}",
                if all {
                    "no approvals"
                } else {
                    "nothing waits for approval"
                }
            );
        }
        for a in rows {
            let decided = a
                .decided_by
                .as_deref()
                .map(|by| format!(" by {by}"))
                .unwrap_or_default();
            // Targets, event ids and reasons come from events: shown inert.
            let row = format!(
                "{:>5}  {:<9}{decided}  {} {} (playbook {}, step {}, event {})  waits because {}; expires {}",
                a.id,
                a.status,
                a.action,
                a.target,
                a.playbook,
                a.step,
                a.event_id,
                a.waits_because,
                time(a.expires_ms)
            );
            println!("{}", crate::text::Inert(&row));
            if let Some(result) = a.result {
                println!("       result: {}", crate::text::Inert(&result));
            }
        }
        Ok(Status::Ok)
    })
}

/// The audit trail of `dir`'s state database, to write to.
async fn audit_log(dir: &Path, state: &StateStore) -> Result<AuditLog, CannotRun> {
    let (_, files) = super::audit::paths(dir)?;
    Ok(AuditLog::open(state, &files).await?)
}

pub fn decide(dir: &Path, id: i64, approve: bool) -> Result<Status, CannotRun> {
    // In dry-run the engine records an approved step as `dry_run` and never acts: say so.
    let dry_run =
        matches!(load_content(dir, None), Ok(Ok(content)) if content.config.actions.dry_run);
    with_state(dir, async |state| {
        let by = operator();
        match Approvals::new(state).decide(id, approve, &by).await? {
            Ok(approval) => {
                let entry = approval.audit_entry(
                    "approval",
                    &by,
                    &approval.status,
                    format!("approval {id}"),
                );
                audit_log(dir, state).await?.append(&[entry]).await?;
                println!(
                    "approval {id} {}: {} {}{}",
                    approval.status,
                    approval.action,
                    crate::text::Inert(&approval.target),
                    if approve && dry_run {
                        " (actions are in dry-run: a running engine records it as dry_run and does not act)"
                    } else if approve {
                        " (a running engine acts within a second)"
                    } else {
                        ""
                    }
                );
                Ok(Status::Ok)
            }
            Err(refused) => Err(CannotRun(refused.to_string())),
        }
    })
}

pub fn mode(dir: &Path, set: Option<&str>) -> Result<Status, CannotRun> {
    with_state(dir, async |state| {
        let approvals = Approvals::new(state);
        if let Some(wanted) = set {
            let mode = match wanted {
                "auto" => Mode::Auto,
                _ => Mode::Manual,
            };
            let by = operator();
            let before = approvals.mode().await?.mode;
            approvals.set_mode(mode, &by, "set by an operator").await?;
            let entry = AuditEntry {
                kind: "mode".into(),
                actor: by,
                status: Some(mode.as_str().into()),
                reason: Some("set by an operator".into()),
                details: serde_json::json!({"from": before.as_str(), "to": mode.as_str()}),
                ..AuditEntry::default()
            };
            audit_log(dir, state).await?.append(&[entry]).await?;
        }
        let current = approvals.mode().await?;
        println!(
            "mode: {} (since {}, by {}: {})",
            current.mode.as_str(),
            if current.since_ms == 0 {
                "the start".to_string()
            } else {
                time(current.since_ms)
            },
            current.changed_by,
            current.reason
        );
        Ok(Status::Ok)
    })
}

/// The anomaly stage's config of `dir` (the default when the content does not load).
pub(super) fn anomaly_config(dir: &Path) -> Result<crate::config::AnomalyConfig, CannotRun> {
    Ok(match load_content(dir, None)? {
        Ok(content) => content.config.anomaly.clone(),
        Err(_) => crate::config::Config::default().anomaly,
    })
}

/// `palisade model status`: how far the engine's learning is, the model in use and a retrain
/// held for review, from the state database.
pub fn model_status(dir: &Path) -> Result<Status, CannotRun> {
    let config = anomaly_config(dir)?;
    if let Some(model) = config.model.as_ref().filter(|_| config.enabled) {
        println!(
            "scoring with the model file `{}` (anomaly.model); the engine does not learn",
            model.display()
        );
        return Ok(Status::Ok);
    }
    if !config.learns() {
        println!("the anomaly stage is off: it neither learns nor scores");
        return Ok(Status::Ok);
    }
    with_state(dir, async |state| {
        let status = crate::anomaly::learning::stored_status(state.pool(), &config)
            .await
            .map_err(crate::state::StateError::from)?;
        println!("{}", status.line());
        Ok(Status::Ok)
    })
}

/// `palisade model accept`: the newest held retrain becomes the model in use; running engines
/// swap it in at their next check.
pub fn model_accept(dir: &Path) -> Result<Status, CannotRun> {
    with_state(dir, async |state| {
        let by = operator();
        match crate::anomaly::learning::accept(state.pool(), &by)
            .await
            .map_err(crate::state::StateError::from)?
        {
            crate::anomaly::learning::Accepted::NothingHeld => {
                Err(CannotRun("no model is held for review".into()))
            }
            crate::anomaly::learning::Accepted::Model(row) => {
                let entry = AuditEntry {
                    kind: "model".into(),
                    actor: by,
                    status: Some("accepted".into()),
                    reason: Some(format!(
                        "anomaly model {} trained at {} accepted by an operator",
                        row.id, row.trained_at
                    )),
                    details: serde_json::json!({
                        "model": row.id,
                        "recent_rate": row.recent_rate,
                        "previous_rate": row.previous_rate,
                    }),
                    ..AuditEntry::default()
                };
                audit_log(dir, state).await?.append(&[entry]).await?;
                println!(
                    "model {} (trained at {}) is in use from each engine's next check",
                    row.id, row.trained_at
                );
                Ok(Status::Ok)
            }
        }
    })
}

pub fn unblock(dir: &Path, address: &str) -> Result<Status, CannotRun> {
    let Ok(crate::actions::ParamValue::Address { ip, prefix }) =
        crate::actions::ParamType::Address.parse(address)
    else {
        return Err(CannotRun(format!(
            "`{address}` is not an IP address or CIDR range"
        )));
    };
    let shown = crate::actions::ParamValue::Address { ip, prefix }.to_string();
    // Without a state database there is no record to close and no audit trail to write to:
    // stop before touching the firewall (which would create palisade's table to delete from).
    state_path(dir)?;
    let backend = match load_content(dir, None)? {
        Ok(content) => content.config.actions.firewall,
        Err(_) => crate::actions::plugins::firewall::Backend::Auto,
    };
    crate::actions::plugins::firewall::unblock_with(backend, ip, prefix)
        .map_err(|e| CannotRun(format!("the firewall refused the unblock: {e}")))?;
    with_state(dir, async |state| {
        let records = crate::actions::plugins::firewall::record_removed(state.pool(), &shown)
            .await
            .map_err(|e| CannotRun(e.to_string()))?;
        let entry = AuditEntry {
            kind: "outcome".into(),
            actor: operator(),
            action: Some("firewall.unblock".into()),
            target: Some(shown.clone()),
            status: Some("executed".into()),
            reason: Some("unblocked by an operator".into()),
            ..AuditEntry::default()
        };
        audit_log(dir, state).await?.append(&[entry]).await?;
        println!("unblocked {shown} ({records} recorded block(s) closed)");
        Ok(Status::Ok)
    })
}
