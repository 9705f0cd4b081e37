//! The event model: one typed shape for every sensor message, whatever shape it arrived in.
//!
//! This module is plain data. It does no I/O, so every other module may depend on it and it
//! depends on none of them.

mod clock;
mod field;
mod flat_fast;
mod normalize;

pub use clock::{TimePolicy, TimeVerdict, judge_time, now_ms, rfc3339_ms};
pub use field::{Field, FieldType};
pub(crate) use normalize::canonical_ip;
pub use normalize::{MAX_EVENT_BYTES, NormalizeError, RejectKind, normalize, normalize_value};

use std::net::IpAddr;

use serde::Serialize;

/// What happened on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ProcessCreate,
    NetworkConnection,
    DnsQuery,
    Login,
}

impl EventKind {
    /// Every kind, in a fixed order; the rule index keeps one slot per kind in this order.
    pub const ALL: [EventKind; 4] = [
        EventKind::ProcessCreate,
        EventKind::NetworkConnection,
        EventKind::DnsQuery,
        EventKind::Login,
    ];

    /// The name used in event JSON and in rule metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ProcessCreate => "process_create",
            EventKind::NetworkConnection => "network_connection",
            EventKind::DnsQuery => "dns_query",
            EventKind::Login => "login",
        }
    }

    /// Parses the flat sensor shape's `type` value.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }

    /// Position of this kind in [`EventKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One normalized sensor event.
///
/// The known fields are typed; an address is an [`IpAddr`], a PID a number. Fields the model
/// does not know are kept in [`Event::extra`] exactly as they arrived, so rules can still read
/// them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// The sensor's id for the event, or one derived from its content when the sensor sent none.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// Milliseconds since the Unix epoch, UTC.
    pub timestamp_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,

    // process_create (pid and name also describe the process behind connections and queries)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,

    // network_connection
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,

    // dns_query
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_name: Option<String>,

    // login
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,

    /// Every field the model does not know, as it arrived (nested ECS objects stay nested).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Event {
    /// An event of `kind` with only the required fields set; the rest are filled by the caller.
    pub fn new(id: impl Into<String>, kind: EventKind, timestamp_ms: i64) -> Event {
        Event {
            id: id.into(),
            kind,
            timestamp_ms,
            host: None,
            pid: None,
            ppid: None,
            name: None,
            parent_name: None,
            cmdline: None,
            process_hash: None,
            image: None,
            user: None,
            remote_ip: None,
            remote_port: None,
            local_port: None,
            protocol: None,
            direction: None,
            query_name: None,
            source_ip: None,
            outcome: None,
            method: None,
            extra: serde_json::Map::new(),
        }
    }

    /// The event time as RFC 3339 text, for output.
    pub fn timestamp_rfc3339(&self) -> String {
        jiff::Timestamp::from_millisecond(self.timestamp_ms)
            .map(|ts| ts.to_string())
            .unwrap_or_else(|_| self.timestamp_ms.to_string())
    }
}
