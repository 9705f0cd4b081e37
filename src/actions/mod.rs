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
pub use params::{InvalidParam, ParamType, ParamValue};
pub use policy::WidestBlock;
pub use pool::{Dispatched, EffectsConfig};

// The plain records a step's decision is made of live below the executor, where the state
// store and the approvals queue can use them.
pub use crate::decision::{ActionRecord, ActionStatus, NotificationLimit, OnFailure, Risk};

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
    ActionSpec {
        name: "notify.email",
        summary: "Send a plain-text e-mail through the SMTP server in `actions.email`",
        params: &[
            required(
                "to",
                ParamType::Recipients,
                "recipients, separated by commas; each must be an e-mail address",
            ),
            required(
                "subject",
                ParamType::HeaderLine,
                "one line; a control character (CR, LF) refuses the step",
            ),
            required(
                "message",
                ParamType::Text,
                "the body (several lines allowed)",
            ),
        ],
        target: "to",
        default_risk: Risk::Low,
    },
    ActionSpec {
        name: "file.scan",
        summary: "Scan a file with the content's YARA rules (only inside `actions.file_scan.roots`)",
        params: &[required(
            "path",
            ParamType::Text,
            "absolute path of the file, e.g. {{ event.image }}",
        )],
        target: "path",
        default_risk: Risk::Low,
    },
];

pub fn lookup(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().find(|action| action.name == name)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    ACTIONS.iter().map(|action| action.name)
}

/// Whether an action tells people (its subject is the detection) rather than acting on a target.
pub fn is_notification(action: &str) -> bool {
    action.starts_with("notify.")
}
