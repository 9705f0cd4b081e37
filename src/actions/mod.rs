//! The response actions playbook steps may name, and the types of their parameters.
//!
//! This registry is the contract between playbooks and plugins: validation checks every step
//! against it, and a step's parameters are parsed into [`ParamValue`]s before anything acts, so
//! an address is an IP address or a CIDR, a PID a number, and never a string that a command line
//! might interpret. Plugins that execute these actions register against the same names.

pub mod executor;
mod params;
pub mod plugins;
pub mod policy;
pub mod pool;

pub use executor::{Executor, Policy};
pub use params::{ParamType, ParamValue};
pub use policy::WidestBlock;
pub use pool::{Dispatched, EffectsConfig};

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

/// One parameter of an action.
#[derive(Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamType,
    pub required: bool,
    /// Used when the step leaves the parameter out.
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

/// One action a step may name.
#[derive(Debug)]
pub struct ActionSpec {
    pub name: &'static str,
    pub summary: &'static str,
    pub params: &'static [ParamSpec],
    /// The parameter that names what the action acts on; shown as `target` in output.
    pub target: &'static str,
    /// The risk of a step that does not state its own.
    pub default_risk: Risk,
}

impl ActionSpec {
    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
}

const fn required(name: &'static str, kind: ParamType, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        required: true,
        default: None,
        doc,
    }
}

const fn optional(
    name: &'static str,
    kind: ParamType,
    default: Option<&'static str>,
    doc: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        required: false,
        default,
        doc,
    }
}

/// Every action palisade knows, in the order the docs list them.
pub static ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "firewall.block",
        summary: "Block an IP address or CIDR range for a limited time",
        params: &[
            required(
                "address",
                ParamType::Address,
                "IP address or CIDR range to block",
            ),
            optional(
                "ttl",
                ParamType::Duration,
                Some("1h"),
                "how long the block holds (e.g. 30m, 1h, 7d)",
            ),
            optional(
                "direction",
                ParamType::Choice(&["both", "inbound", "outbound"]),
                Some("both"),
                "traffic to drop",
            ),
            optional("reason", ParamType::Text, None, "recorded with the block"),
            optional(
                "widest_prefix",
                ParamType::PrefixLength,
                None,
                "allow a block as wide as this prefix length, wider than `actions.widest_block`; \
                 a literal only, the step must be high-risk, and a wider block waits for approval",
            ),
        ],
        target: "address",
        default_risk: Risk::Medium,
    },
    ActionSpec {
        name: "firewall.unblock",
        summary: "Remove a block palisade placed",
        params: &[required(
            "address",
            ParamType::Address,
            "IP address or CIDR range to unblock",
        )],
        target: "address",
        default_risk: Risk::Low,
    },
    ActionSpec {
        name: "process.kill",
        summary: "Terminate a process (SIGTERM, then SIGKILL after the grace period)",
        params: &[
            required("pid", ParamType::Pid, "the process id"),
            optional(
                "name",
                ParamType::Text,
                None,
                "the name the process must still have (guards against PID reuse)",
            ),
            optional(
                "grace",
                ParamType::Duration,
                Some("5s"),
                "wait between SIGTERM and SIGKILL",
            ),
        ],
        target: "pid",
        default_risk: Risk::High,
    },
    ActionSpec {
        name: "notify.webhook",
        summary: "POST a JSON message to a webhook (generic or Slack-compatible)",
        params: &[
            required("url", ParamType::Url, "http or https URL"),
            required("message", ParamType::Text, "the text to send"),
            optional(
                "format",
                ParamType::Choice(&["json", "slack"]),
                Some("json"),
                "body shape",
            ),
        ],
        target: "url",
        default_risk: Risk::Low,
    },
    ActionSpec {
        name: "notify.redis",
        summary: "PUBLISH a JSON message on a Redis channel",
        params: &[
            required("channel", ParamType::Channel, "channel name"),
            required("message", ParamType::Text, "the text to send"),
        ],
        target: "channel",
        default_risk: Risk::Low,
    },
    ActionSpec {
        name: "notify.log",
        summary: "Write a message to palisade's log",
        params: &[
            required("message", ParamType::Text, "the text to log"),
            optional(
                "level",
                ParamType::Choice(&["info", "warn", "error"]),
                Some("warn"),
                "log level",
            ),
        ],
        target: "level",
        default_risk: Risk::Low,
    },
    ActionSpec {
        name: "notify.syslog",
        summary: "Send an RFC 5424 syslog message to a SIEM over UDP or TCP",
        params: &[
            required(
                "server",
                ParamType::HostPort,
                "host:port of the syslog receiver",
            ),
            required("message", ParamType::Text, "the text to send"),
            optional(
                "transport",
                ParamType::Choice(&["udp", "tcp"]),
                Some("udp"),
                "transport",
            ),
        ],
        target: "server",
        default_risk: Risk::Low,
    },
];

pub fn lookup(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().find(|action| action.name == name)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    ACTIONS.iter().map(|action| action.name)
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
    /// Every parameter as rendered (after defaults), for the audit trail.
    pub params: std::collections::BTreeMap<&'static str, String>,
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

/// Whether an action tells people (its subject is the detection) rather than acting on a target.
pub fn is_notification(action: &str) -> bool {
    action.starts_with("notify.")
}
