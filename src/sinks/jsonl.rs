//! The JSON-lines contract of `palisade replay` (and `run --log-format json`): one object per
//! line, `{"kind":"detection",...}` or `{"kind":"action",...}`.

use serde_json::{Value, json};

use crate::actions::ActionRecord;
use crate::detection::Detection;
use crate::pipeline::Outcome;

pub fn detection_line(detection: &Detection) -> Value {
    let mut value = json!({
        "kind": "detection",
        "event_id": detection.event_id,
        "rule": &*detection.rule,
        "severity": detection.severity,
        "title": detection.title,
        "stage": detection.stage,
        "tags": &*detection.tags,
    });
    // Only on detections of rules not yet (or no longer) stable, like the detection's own JSON.
    if !detection.status.is_stable() {
        value["status"] = json!(detection.status);
    }
    if let Some(entity) = &detection.entity {
        value["entity"] = json!(entity);
    }
    if let Some(score) = detection.score {
        value["score"] = json!(score);
    }
    if !detection.intel.is_empty() {
        value["intel"] = json!(detection.intel);
    }
    if let Some(attribution) = &detection.attribution {
        if let Some(author) = &attribution.author {
            value["author"] = json!(author);
        }
        if !attribution.references.is_empty() {
            value["references"] = json!(attribution.references);
        }
    }
    value
}

pub fn action_line(action: &ActionRecord) -> Value {
    let mut value = json!({
        "kind": "action",
        "event_id": action.event_id,
        "playbook": &*action.playbook,
        "step": action.step,
        "action": action.action,
        "target": action.target,
        "status": action.status,
        "risk": action.risk,
        "rule": &*action.rule,
        "params": action.params,
    });
    if let Some(reason) = &action.reason {
        value["reason"] = json!(reason);
    }
    value
}

/// The replay output of an outcome: each detection followed by the actions it caused.
pub fn replay_lines(outcome: &Outcome) -> Vec<Value> {
    lines_for(&outcome.detections, &outcome.actions)
}

/// Each detection followed by the actions it caused.
pub fn lines_for<'a>(
    detections: impl IntoIterator<Item = &'a Detection>,
    actions: &[ActionRecord],
) -> Vec<Value> {
    let mut lines = Vec::new();
    for detection in detections {
        lines.push(detection_line(detection));
        for action in actions
            .iter()
            .filter(|a| a.event_id == detection.event_id && a.rule == detection.rule)
        {
            lines.push(action_line(action));
        }
    }
    lines
}
