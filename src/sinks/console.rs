//! Alerts for a person reading a terminal.

use std::io::Write;

use crate::actions::ActionRecord;
use crate::detection::Entity;
use crate::state::{Batch, DetectionRow};
use crate::text::Inert;

/// How detections are shown on standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFormat {
    /// Readable lines for a person.
    Text,
    /// The replay JSON lines.
    Json,
    /// Nothing (benchmarks, tests).
    Quiet,
}

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

/// Prints the outcomes of a detection's steps that the effects pool settled after its batch
/// was shown (those steps were shown `dispatched` then): a line naming the detection, then each
/// settled step as in [`show`].
pub fn show_settled(format: AlertFormat, row: &DetectionRow, steps: &[&ActionRecord]) {
    if format == AlertFormat::Quiet || steps.is_empty() {
        return;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = match format {
        AlertFormat::Quiet => Ok(()),
        AlertFormat::Text => writeln!(
            out,
            "{} OUTCOME  {}  [event {}]",
            Inert(&row.event_time),
            Inert(&row.detection.rule[..]),
            Inert(&row.detection.event_id)
        )
        .and_then(|()| {
            steps
                .iter()
                .try_for_each(|action| writeln!(out, "{}", render_action(action)))
        }),
        AlertFormat::Json => steps
            .iter()
            .try_for_each(|action| writeln!(out, "{}", super::jsonl::action_line(action))),
    };
    if let Err(err) = written.and_then(|()| out.flush()) {
        tracing::warn!("cannot write outcomes to standard output: {err}");
    }
}

/// `2025-11-03T14:30:05Z HIGH     office-spawns-shell  ws-17  WINWORD.EXE started powershell.exe  [event e-1]`
/// (`office-spawns-shell (test)` for a rule whose status is not stable)
///
/// One detection is one line: every value from an event (host, names, the title rules build
/// from event fields, ids) is shown inert, so none can break the line or drive the terminal.
pub fn render_detection(row: &DetectionRow) -> String {
    let detection = &row.detection;
    let entity = match &detection.entity {
        Some(Entity::Process { pid, name }) => match name {
            Some(name) => format!("  process {} ({pid})", Inert(name)),
            None => format!("  process {pid}"),
        },
        Some(Entity::Address { ip }) => format!("  address {ip}"),
        Some(Entity::User { name }) => format!("  user {}", Inert(name)),
        None => String::new(),
    };
    // A rule on trial says so beside its id, so nobody reads its line as a vetted alert.
    let status = if detection.status.is_stable() {
        String::new()
    } else {
        format!(" ({})", detection.status)
    };
    format!(
        "{} {:<8} {}{status}  {}  {}{}  [event {}]",
        Inert(&row.event_time),
        detection.severity.as_str().to_uppercase(),
        Inert(&detection.rule[..]),
        Inert(row.host.as_deref().unwrap_or("-")),
        Inert(&detection.title),
        entity,
        Inert(&detection.event_id)
    )
}

/// `    -> process.kill 4242 (playbook contain-office-macro, step kill) dry_run: actions are in dry-run`
///
/// Targets and reasons can hold event values; they are shown inert like the detection line.
pub fn render_action(action: &ActionRecord) -> String {
    let reason = action
        .reason
        .as_deref()
        .map(|r| format!(": {}", Inert(r)))
        .unwrap_or_default();
    format!(
        "    -> {} {} (playbook {}, step {}) {}{}",
        action.action,
        Inert(if action.target.is_empty() {
            "-"
        } else {
            &action.target
        }),
        Inert(&action.playbook[..]),
        Inert(&action.step),
        action.status.as_str(),
        reason
    )
}
