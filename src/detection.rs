//! What the deciding stages produce: a [`Detection`] says an event matters, how much, and which
//! entity a response should act on. Plain data, like the event model.

use std::net::IpAddr;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The ids of detections that come from a built-in stage rather than a rule file: the anomaly
/// model and the tracker's detectors. Playbooks may name them in `trigger.rules`.
pub const BUILT_IN_DETECTORS: &[&str] = &[
    "anomaly-model",
    "tracker-beaconing",
    "tracker-port-scan",
    "tracker-host-sweep",
    "tracker-first-seen",
];

/// How bad a detection is. Ordered, so playbooks can ask for "at least high".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const NAMES: &'static str = "informational, low, medium, high, critical";

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Informational => "informational",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(name: &str) -> Option<Severity> {
        [
            Severity::Informational,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// Where a rule is in its life, as its author says (`status`). Rhai rules and Sigma rules use
/// the same words; `unsupported` is Sigma's alone (a rule that cannot run as written).
///
/// The config chooses which statuses run (`rules.statuses`); detections carry their rule's
/// status, and playbooks act on detections other than `stable` and `deprecated` ones only when
/// their trigger lists that status (docs/rules.md, "Lifecycle").
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RuleStatus {
    /// Trusted: its detections act. A rule that names no status is stable, so rules written
    /// before statuses existed keep acting as they did.
    #[default]
    Stable,
    /// Running to see what it finds: detections are marked `test` and acted on only by
    /// playbooks that ask for them.
    Test,
    /// New and unproven: like `test`, acted on only by playbooks that ask for it.
    Experimental,
    /// Replaced or kept for history: runs only when the config lists it.
    Deprecated,
    /// Sigma only: the rule cannot be used as written; runs only when the config lists it.
    Unsupported,
}

impl RuleStatus {
    /// Every status, in the order they are listed to people.
    pub const ALL: [RuleStatus; 5] = [
        RuleStatus::Experimental,
        RuleStatus::Test,
        RuleStatus::Stable,
        RuleStatus::Deprecated,
        RuleStatus::Unsupported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleStatus::Stable => "stable",
            RuleStatus::Test => "test",
            RuleStatus::Experimental => "experimental",
            RuleStatus::Deprecated => "deprecated",
            RuleStatus::Unsupported => "unsupported",
        }
    }

    pub fn parse(name: &str) -> Option<RuleStatus> {
        RuleStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn is_stable(&self) -> bool {
        *self == RuleStatus::Stable
    }

    /// Whether a playbook whose trigger names no `statuses` acts on detections of this status:
    /// only `stable` and `deprecated` ones. Not `test` or `experimental`, which a rule's author
    /// has not yet vouched for, nor `unsupported`, which Sigma says cannot be used as written.
    pub fn acted_on_by_default(self) -> bool {
        matches!(self, RuleStatus::Stable | RuleStatus::Deprecated)
    }
}

impl std::fmt::Display for RuleStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which deciding stage produced a detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// A Rhai rule matched.
    Rule,
    /// The anomaly model scored the event above its threshold.
    Anomaly,
    /// The long-term behaviour tracker saw a pattern across many events.
    Tracker,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Rule => "rule",
            Stage::Anomaly => "anomaly",
            Stage::Tracker => "tracker",
        }
    }
}

/// The thing a response acts on, as named by the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entity {
    Process {
        pid: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    Address {
        ip: IpAddr,
    },
    User {
        name: String,
    },
}

/// One finding about one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    pub event_id: String,
    /// The id of the rule (or model, or tracker detector) that decided.
    pub rule: Arc<str>,
    pub stage: Stage,
    pub severity: Severity,
    /// The status of the rule that decided (`stable` for the built-in detectors). Left out of
    /// the JSON when stable, so a consumer sees `"status"` only on detections to treat with
    /// care.
    #[serde(skip_serializing_if = "RuleStatus::is_stable")]
    pub status: RuleStatus,
    pub title: String,
    pub tags: Arc<[String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<Entity>,
    /// How sure the stage is, in [0, 1], where the stage has a score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The threat-intelligence hits the decision rests on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub intel: Vec<IntelHit>,
    /// Who wrote the rule and where it comes from, for rules that say so (Sigma rules do; their
    /// licence asks that alerts keep the author).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Arc<Attribution>>,
}

/// A rule's author and references, carried on its detections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attribution {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
}

// The intel hit types are plain data carried by detections (and alerts); the intel module
// produces them and re-exports them where its callers look.

/// A match of an event value against an indicator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntelHit {
    /// The value from the event that matched.
    pub value: String,
    /// The indicator it matched (a range for a range hit, the listed parent for a subdomain).
    pub indicator: String,
    pub kind: IndicatorKind,
    pub source: String,
    pub confidence: u8,
    pub severity: u8,
    /// 0.7 × confidence + 0.3 × severity, 0–100.
    pub score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat: Option<String>,
    /// The warninglist the indicator is on: it must never cause an automatic block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// What an indicator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndicatorKind {
    /// A single IPv4 or IPv6 address.
    Ip,
    /// An IPv4 or IPv6 range.
    Cidr,
    Domain,
    Url,
    Md5,
    Sha1,
    Sha256,
}

impl IndicatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IndicatorKind::Ip => "ip",
            IndicatorKind::Cidr => "cidr",
            IndicatorKind::Domain => "domain",
            IndicatorKind::Url => "url",
            IndicatorKind::Md5 => "md5",
            IndicatorKind::Sha1 => "sha1",
            IndicatorKind::Sha256 => "sha256",
        }
    }

    pub fn parse(name: &str) -> Option<IndicatorKind> {
        [
            IndicatorKind::Ip,
            IndicatorKind::Cidr,
            IndicatorKind::Domain,
            IndicatorKind::Url,
            IndicatorKind::Md5,
            IndicatorKind::Sha1,
            IndicatorKind::Sha256,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}
