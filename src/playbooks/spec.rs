//! The YAML a playbook author writes, as serde types. Unknown keys are errors everywhere.
//! `schemas/playbook.schema.json` is generated from these types.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// The executor acts on it; it lives with the action records.
pub use crate::actions::OnFailure;
use crate::actions::Risk;
use crate::cases::ExpectedOutcome;
use crate::detection::{RuleStatus, Severity, Stage};

/// A playbook: when a matching detection arrives, run these steps in order.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(title = "palisade playbook")]
pub struct PlaybookSpec {
    /// Unique id: lowercase letters, digits, `-`, `_`, `.`.
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `enforce` acts; `shadow` only reports what it would do (status `dry_run`).
    #[serde(default)]
    pub mode: PlaybookMode,
    /// Whether steps with `risk: high` wait for a person's approval.
    #[serde(default)]
    pub high_risk_approval: HighRiskApproval,
    /// Caps how many messages each notification step sends within a window. Beyond the cap a
    /// notification is summarised, never dropped: it is audited as `summarised` and the step's
    /// next message says how many more there were. Without it, `actions.max_per_minute` is the
    /// cap (per step and destination, also summarising).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_limit: Option<NotificationLimitSpec>,
    pub trigger: TriggerSpec,
    pub steps: Vec<StepSpec>,
    /// Test cases run by `palisade test`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<PlaybookTestSpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlaybookMode {
    #[default]
    Enforce,
    Shadow,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HighRiskApproval {
    /// High-risk steps are queued until a person approves them (the default).
    #[default]
    Required,
    /// High-risk steps act at once. Say why in the playbook's description.
    NotRequired,
}

/// `notification_limit`: at most `count` messages per notification step within `window`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct NotificationLimitSpec {
    /// Messages per step within the window, at least 1.
    pub count: usize,
    /// A duration such as 30s, 1m or 1h.
    pub window: String,
}

/// Which detections start the playbook. Every condition given must hold; within a list, any
/// entry may match. At least one condition is required.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TriggerSpec {
    /// Rule ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// Tags; `attack.t1059` also matches `attack.t1059.001`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// Detection stages (`rule`, `anomaly`, `tracker`); any stage when left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
    /// The statuses of the rules whose detections the playbook acts on. When left out:
    /// `stable` and `deprecated` only, never `test`, `experimental` or `unsupported` (a rule's
    /// author has not vouched for those). List them to act on them, e.g. `statuses: [test]` for
    /// a playbook that only notifies about a rule on trial.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<RuleStatus>,
}

/// One step.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct StepSpec {
    /// Unique within the playbook.
    pub id: String,
    /// An action name, e.g. `firewall.block`, `process.kill`, `notify.webhook`.
    pub action: String,
    /// Parameters. Text may use `{{ event.FIELD }}`, `{{ detection.FIELD }}` and
    /// `{{ entity.FIELD }}`.
    #[serde(default, rename = "with")]
    #[schemars(with = "BTreeMap<String, ParamLiteral>")]
    pub params: BTreeMap<String, yaml_serde::Value>,
    /// A Rhai expression over `event` and `detection`; the step is skipped when it is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Defaults to the action's own risk (kill: high, block: medium, notify: low).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    #[serde(default)]
    pub on_failure: OnFailure,
}

/// A parameter value as written: text (possibly with `{{ }}` references), a number or a boolean.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ParamLiteral {
    Text(String),
    Integer(i64),
    Boolean(bool),
}

/// A test case: events in, expected detections and actions out.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PlaybookTestSpec {
    pub name: String,
    /// Events inline, in either input shape; a missing `timestamp` is filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<serde_json::Value>>,
    /// A JSON-lines file of events, relative to the content directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixture: Option<PathBuf>,
    /// Indicators the case's threat-intelligence matcher holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intel: Vec<crate::cases::TestIndicator>,
    /// Score the events with the content's anomaly model (`anomaly.model` in the config).
    /// Off by default, so cases do not depend on a model trained on someone's baseline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anomaly: bool,
    pub expect: ExpectedOutcome,
}
