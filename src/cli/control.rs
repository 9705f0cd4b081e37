//! `palisade approvals list | approve ID | reject ID` and `palisade mode [auto|manual]`: a person
//! in charge of a running engine. They change the state database directly; the engine reads it
//! (WAL mode lets both work at once).

use crate::approvals::{Approvals, Mode};
use crate::audit::{AuditEntry, AuditLog, operator};
use crate::state::StateStore;

use super::{CannotRun, Place, Status};

/// The state database an engine started with the same `-C` and `--config` uses, which must
/// exist: these commands act on what an engine did. Only the config is read, so a broken rule
/// cannot send the command to another database.
fn state_path(at: &Place) -> Result<std::path::PathBuf, CannotRun> {
    let path = at.resolve(&at.read_config()?.state.path);
    if !path.exists() {
        return Err(CannotRun(format!(
            "no state database at `{}`: the engine has not run there",
            path.display()
        )));
    }
    Ok(path)
}

/// Who runs this command, for the audit trail (`audit::operator`).
fn actor(at: &Place) -> Result<String, CannotRun> {
    Ok(operator(at.read_config()?.audit.operator.as_deref()))
}

fn with_state<T>(
    at: &Place,
    work: impl AsyncFnOnce(&StateStore) -> Result<T, CannotRun>,
) -> Result<T, CannotRun> {
    let path = state_path(at)?;
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

pub fn list(at: &Place, all: bool) -> Result<Status, CannotRun> {
    with_state(at, async |state| {
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
async fn audit_log(at: &Place, state: &StateStore) -> Result<AuditLog, CannotRun> {
    let (_, files) = super::audit::paths(at)?;
    Ok(AuditLog::open(state, &files).await?)
}

pub fn decide(at: &Place, id: i64, approve: bool) -> Result<Status, CannotRun> {
    // In dry-run the engine records an approved step as `dry_run` and never acts: say so.
    let config = at.read_config()?;
    let dry_run = config.actions.dry_run;
    with_state(at, async |state| {
        let by = actor(at)?;
        let audit = audit_log(at, state).await?;
        match crate::approvals::operator::decide(state, &audit, id, approve, &by, None).await? {
            Ok(approval) => {
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

pub fn mode(at: &Place, set: Option<&str>) -> Result<Status, CannotRun> {
    with_state(at, async |state| {
        let approvals = Approvals::new(state);
        if let Some(wanted) = set {
            let mode = match wanted {
                "auto" => Mode::Auto,
                _ => Mode::Manual,
            };
            let by = actor(at)?;
            let audit = audit_log(at, state).await?;
            crate::approvals::operator::set_mode(state, &audit, mode, &by, "set by an operator")
                .await?;
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

/// The anomaly stage's config, as an engine started with the same options reads it.
pub(super) fn anomaly_config(at: &Place) -> Result<crate::config::AnomalyConfig, CannotRun> {
    Ok(at.read_config()?.anomaly)
}

/// `palisade model status`: how far the engine's learning is, the model in use and a retrain
/// held for review, from the state database.
pub fn model_status(at: &Place) -> Result<Status, CannotRun> {
    let config = anomaly_config(at)?;
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
    with_state(at, async |state| {
        let status = crate::anomaly::learning::stored_status(state.pool(), &config)
            .await
            .map_err(crate::state::StateError::from)?;
        println!("{}", status.line());
        Ok(Status::Ok)
    })
}

/// `palisade model accept`: the newest held retrain becomes the model in use; running engines
/// swap it in at their next check.
pub fn model_accept(at: &Place) -> Result<Status, CannotRun> {
    with_state(at, async |state| {
        let by = actor(at)?;
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
                audit_log(at, state).await?.append(&[entry]).await?;
                println!(
                    "model {} (trained at {}) is in use from each engine's next check",
                    row.id, row.trained_at
                );
                Ok(Status::Ok)
            }
        }
    })
}

pub fn unblock(at: &Place, address: &str) -> Result<Status, CannotRun> {
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
    state_path(at)?;
    let backend = at.read_config()?.actions.firewall;
    crate::actions::plugins::firewall::unblock_with(backend, ip, prefix)
        .map_err(|e| CannotRun(format!("the firewall refused the unblock: {e}")))?;
    with_state(at, async |state| {
        let records = crate::actions::plugins::firewall::record_removed(state.pool(), &shown)
            .await
            .map_err(|e| CannotRun(e.to_string()))?;
        let entry = AuditEntry {
            kind: "outcome".into(),
            actor: actor(at)?,
            action: Some("firewall.unblock".into()),
            target: Some(shown.clone()),
            status: Some("executed".into()),
            reason: Some("unblocked by an operator".into()),
            ..AuditEntry::default()
        };
        audit_log(at, state).await?.append(&[entry]).await?;
        println!("unblocked {shown} ({records} recorded block(s) closed)");
        Ok(Status::Ok)
    })
}

/// `palisade console hash-password`: the first line of standard input, hashed.
pub fn hash_password(iterations: u32) -> Result<Status, CannotRun> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(CannotRun(
            "no password on standard input (its first line is hashed)".into(),
        ));
    }
    println!("{}", crate::console::password::hash(password, iterations)?);
    Ok(Status::Ok)
}
