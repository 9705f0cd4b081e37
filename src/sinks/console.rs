//! Alerts for a person reading a terminal.

use std::io::Write;

use crate::actions::ActionRecord;
use crate::detection::Entity;
use crate::engine::AlertFormat;
use crate::state::{Batch, DetectionRow};

/// Prints a committed batch: each detection with what became of its steps (executed, failed,
/// queued, ...), as readable lines or as the replay JSON lines.
pub fn show(format: AlertFormat, batch: &Batch) {
    if format == AlertFormat::Quiet || batch.detections.is_empty() {
        return;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = match format {
        AlertFormat::Quiet => Ok(()),
        AlertFormat::Text => batch.detections.iter().try_for_each(|row| {
            writeln!(out, "{}", render_detection(row))?;
            batch
                .actions
                .iter()
                .filter(|a| a.event_id == row.detection.event_id && a.rule == row.detection.rule)
                .try_for_each(|action| writeln!(out, "{}", render_action(action)))
        }),
        AlertFormat::Json => super::lines_for(
            batch.detections.iter().map(|r| &r.detection),
            &batch.actions,
        )
        .iter()
        .try_for_each(|value| writeln!(out, "{value}")),
    };
    if let Err(err) = written.and_then(|()| out.flush()) {
        tracing::warn!("cannot write alerts to standard output: {err}");
    }
}

/// `2025-11-03T14:30:05Z HIGH     office-spawns-shell  ws-17  WINWORD.EXE started powershell.exe  [event e-1]`
pub fn render_detection(row: &DetectionRow) -> String {
    let detection = &row.detection;
    let entity = match &detection.entity {
        Some(Entity::Process { pid, name }) => match name {
            Some(name) => format!("  process {name} ({pid})"),
            None => format!("  process {pid}"),
        },
        Some(Entity::Address { ip }) => format!("  address {ip}"),
        Some(Entity::User { name }) => format!("  user {name}"),
        None => String::new(),
    };
    format!(
        "{} {:<8} {}  {}  {}{}  [event {}]",
        row.event_time,
        detection.severity.as_str().to_uppercase(),
        detection.rule,
        row.host.as_deref().unwrap_or("-"),
        detection.title,
        entity,
        detection.event_id
    )
}

/// `    -> process.kill 4242 (playbook contain-office-macro, step kill) dry_run: actions are in dry-run`
pub fn render_action(action: &ActionRecord) -> String {
    let reason = action
        .reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    format!(
        "    -> {} {} (playbook {}, step {}) {}{}",
        action.action,
        if action.target.is_empty() {
            "-"
        } else {
            &action.target
        },
        action.playbook,
        action.step,
        action.status.as_str(),
        reason
    )
}
