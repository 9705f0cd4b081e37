//! Alerts for a person reading a terminal.

use crate::actions::ActionRecord;
use crate::detection::{Detection, Entity};
use crate::event::Event;

/// `2025-11-03T14:30:05Z HIGH     office-spawns-shell  ws-17  WINWORD.EXE started powershell.exe  [event e-1]`
pub fn render_detection(event: &Event, detection: &Detection) -> String {
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
        event.timestamp_rfc3339(),
        detection.severity.as_str().to_uppercase(),
        detection.rule,
        event.host.as_deref().unwrap_or("-"),
        detection.title,
        entity,
        event.id
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
