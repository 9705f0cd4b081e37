//! What a person in charge does to a running engine, whatever they use to do it: the command
//! line (`palisade approvals`, `palisade mode`) and the console call these, so a decision is
//! checked, stored and audited the same way from both.

use crate::audit::{AuditEntry, AuditLog};
use crate::state::{StateError, StateStore};

use super::{Approval, Approvals, DecisionRefused, Mode};

/// Approves or rejects pending approval `id` as `by` (`operator:<name>`) and appends the
/// decision to the audit trail. `reason` is the person's words, kept with the entry.
pub async fn decide(
    state: &StateStore,
    audit: &AuditLog,
    id: i64,
    approve: bool,
    by: &str,
    reason: Option<&str>,
) -> Result<Result<Approval, DecisionRefused>, StateError> {
    let approval = match Approvals::new(state).decide(id, approve, by).await? {
        Ok(approval) => approval,
        Err(refused) => return Ok(Err(refused)),
    };
    let said = match reason.map(str::trim).filter(|r| !r.is_empty()) {
        Some(reason) => format!("approval {id}: {reason}"),
        None => format!("approval {id}"),
    };
    let entry = approval.audit_entry("approval", by, &approval.status, said);
    audit.append(&[entry]).await?;
    Ok(Ok(approval))
}

/// Switches the engine's mode as `by`, with `reason`, and appends the switch to the audit
/// trail (from and to). Running engines read the mode within a second.
pub async fn set_mode(
    state: &StateStore,
    audit: &AuditLog,
    mode: Mode,
    by: &str,
    reason: &str,
) -> Result<(), StateError> {
    let approvals = Approvals::new(state);
    let before = approvals.mode().await?.mode;
    approvals.set_mode(mode, by, reason).await?;
    let entry = AuditEntry {
        kind: "mode".into(),
        actor: by.to_string(),
        status: Some(mode.as_str().into()),
        reason: Some(reason.to_string()),
        details: serde_json::json!({"from": before.as_str(), "to": mode.as_str()}),
        ..AuditEntry::default()
    };
    audit.append(&[entry]).await?;
    Ok(())
}
