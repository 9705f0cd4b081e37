//! What a playbook step decided for one detection, as plain data: the record the executor
//! fills in and the state store, the approvals queue, the sinks and the audit trail read. It
//! sits below all of them (and below `actions`, which re-exports it), so none of them needs
//! the executor to name a step's outcome.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How much damage a wrong execution of a step could do; high-risk steps wait for approval.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
}

/// What became of one step for one detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Decided and recorded; nothing executes it yet.
    Planned,
    /// Would have run, but dry-run or shadow mode holds it back.
    DryRun,
    Executed,
    /// Waiting for a person's approval.
    Queued,
    /// Not allowed: a parameter did not parse, or the target is protected.
    Refused,
    Failed,
    /// The step's `when` condition was false, or an earlier step aborted the playbook.
    Skipped,
    /// A notification over its step's limit: not sent on its own, counted, and reported in the
    /// step's next message ("N more like this in the last ...").
    Summarised,
    /// Handed to the effects pool (it calls an outside system); the row is updated with the
    /// outcome when it arrives.
    Dispatched,
    /// Handed to the effects pool and given up at shutdown before its outcome arrived: it may
    /// or may not have reached its receiver.
    Abandoned,
}

impl ActionStatus {
    /// The status stored as `text` (the inverse of [`ActionStatus::as_str`]).
    pub fn parse(text: &str) -> Option<ActionStatus> {
        [
            ActionStatus::Planned,
            ActionStatus::DryRun,
            ActionStatus::Executed,
            ActionStatus::Queued,
            ActionStatus::Refused,
            ActionStatus::Failed,
            ActionStatus::Skipped,
            ActionStatus::Summarised,
            ActionStatus::Dispatched,
            ActionStatus::Abandoned,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Planned => "planned",
            ActionStatus::DryRun => "dry_run",
            ActionStatus::Executed => "executed",
            ActionStatus::Queued => "queued",
            ActionStatus::Refused => "refused",
            ActionStatus::Failed => "failed",
            ActionStatus::Skipped => "skipped",
            ActionStatus::Summarised => "summarised",
            ActionStatus::Dispatched => "dispatched",
            ActionStatus::Abandoned => "abandoned",
        }
    }
}

/// A step's parameter as a typed value: parsed once, when the step is planned (or when a
/// stored approval is read back), and carried as it is to the plugin that acts on it.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// An address with its prefix length (32 or 128 for a single address). The address is the
    /// network's first address (host bits cleared), as the firewall stores it.
    Address {
        ip: std::net::IpAddr,
        prefix: u8,
    },
    PrefixLength(u8),
    Pid(u32),
    Duration(std::time::Duration),
    Text(String),
    Url(url::Url),
    HostPort {
        host: String,
        port: u16,
    },
    Choice(&'static str),
    /// E-mail addresses, each checked as an address (`ops@example.com`), in the order written,
    /// without repeats.
    Recipients(Vec<String>),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Address { ip, prefix } => {
                let full = if ip.is_ipv4() { 32 } else { 128 };
                if *prefix == full {
                    write!(f, "{ip}")
                } else {
                    write!(f, "{ip}/{prefix}")
                }
            }
            ParamValue::PrefixLength(length) => write!(f, "{length}"),
            ParamValue::Pid(pid) => write!(f, "{pid}"),
            ParamValue::Duration(d) => write!(f, "{}s", d.as_secs()),
            ParamValue::Text(text) => f.write_str(text),
            ParamValue::Url(url) => f.write_str(url.as_str()),
            ParamValue::HostPort { host, port } => write!(f, "{host}:{port}"),
            ParamValue::Choice(word) => f.write_str(word),
            ParamValue::Recipients(addresses) => f.write_str(&addresses.join(", ")),
        }
    }
}

/// Written as its text, so the audit trail, the state rows and replay output show each
/// parameter as an author would write it.
impl Serialize for ParamValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One step's outcome for one detection: the `{"kind":"action",...}` line of replay output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionRecord {
    pub event_id: String,
    pub playbook: std::sync::Arc<str>,
    pub step: String,
    pub action: &'static str,
    /// The rendered value of the action's target parameter (empty when it could not render).
    pub target: String,
    pub status: ActionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub risk: Risk,
    /// The rule whose detection triggered the playbook.
    pub rule: std::sync::Arc<str>,
    /// Every parameter as rendered and parsed (after defaults): what the plugin acts on and,
    /// as text, what the audit trail shows.
    pub params: std::collections::BTreeMap<&'static str, ParamValue>,
    /// What the rest of the playbook does when this step fails when executed.
    #[serde(skip)]
    pub on_failure: OnFailure,
    /// For a notification: its playbook's `notification_limit`, if it has one.
    #[serde(skip)]
    pub notification_limit: Option<NotificationLimit>,
}

/// What happens to the rest of the playbook when a step fails or is refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Go on with the next step.
    Continue,
    /// Skip the remaining steps (the default).
    #[default]
    Abort,
    /// Skip the remaining steps and switch the engine to manual mode.
    Degrade,
}

/// At most `count` notifications per step within `window`; the rest are summarised, never
/// dropped: each is audited as `summarised` and the step's next message says how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationLimit {
    pub count: usize,
    pub window: std::time::Duration,
}
