//! The event model: one typed shape for every sensor message, whatever shape it arrived in.
//!
//! This module is plain data. It does no I/O, so every other module may depend on it and it
//! depends on none of them.

mod clock;
mod field;
mod flat_fast;
mod normalize;

pub use clock::{MAX_AHEAD_MS, TimePolicy, TimeVerdict, judge_time, now_ms, rfc3339_ms};
#[cfg(test)]
pub(crate) use field::tests as field_tests;
pub use field::{Field, FieldType, squash};
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
    /// Full path of the parent's executable (Sysmon `ParentImage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_cmdline: Option<String>,
    /// The account the parent process runs as (Sysmon `ParentUser`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_user: Option<String>,
    /// The file name the executable was built with (PE version resource), which survives a
    /// rename of the file on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_file_name: Option<String>,
    /// Windows integrity level (`Low`, `Medium`, `High`, `System`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrity_level: Option<String>,
    /// The process's working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_directory: Option<String>,
    /// The logon session (Windows `0x3e7`, Linux audit session id), as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logon_id: Option<String>,
    /// The hashes exactly as the sensor listed them (Sysmon `SHA1=..,MD5=..,IMPHASH=..`), when it
    /// sent such a list; the typed hashes below are filled from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashes: Option<String>,
    /// Lowercase hex digests of the executable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imphash: Option<String>,
    // The executable's PE version resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_version: Option<String>,

    // network_connection
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// `inbound` or `outbound` (ECS also writes `ingress`/`egress`); Sigma's `Initiated` reads
    /// it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// The remote end's host name, when the sensor resolved it (Sysmon `DestinationHostname`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_hostname: Option<String>,
    /// This host's address on the connection (Sysmon `SourceIp` of a network connection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_hostname: Option<String>,

    // dns_query
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_name: Option<String>,
    /// The answers as the sensor wrote them (Sysmon: `type:  5 cdn.example;::ffff:1.2.3.4;`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_results: Option<String>,
    /// The resolver's status (Sysmon writes the Windows status code, `0` for success; ECS
    /// `dns.response_code` such as `NOERROR`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_status: Option<String>,

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
            parent_image: None,
            parent_cmdline: None,
            parent_user: None,
            original_file_name: None,
            integrity_level: None,
            current_directory: None,
            logon_id: None,
            hashes: None,
            md5: None,
            sha1: None,
            sha256: None,
            imphash: None,
            company: None,
            product: None,
            file_description: None,
            file_version: None,
            remote_ip: None,
            remote_port: None,
            local_port: None,
            protocol: None,
            direction: None,
            remote_hostname: None,
            local_ip: None,
            local_hostname: None,
            query_name: None,
            query_results: None,
            query_status: None,
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

impl Event {
    /// Whether this host opened the connection, read from [`Event::direction`]: Sigma's
    /// `Initiated`. `None` when the direction is absent or says neither (ECS `internal`,
    /// `unknown`).
    pub fn initiated(&self) -> Option<bool> {
        let direction = self.direction.as_deref()?;
        if direction.eq_ignore_ascii_case("outbound") || direction.eq_ignore_ascii_case("egress") {
            Some(true)
        } else if direction.eq_ignore_ascii_case("inbound")
            || direction.eq_ignore_ascii_case("ingress")
        {
            Some(false)
        } else {
            None
        }
    }

    /// The hash list as Sysmon writes it: the sensor's own text when it sent one, otherwise
    /// composed from the typed hashes in Sysmon's order (`SHA1=`, `MD5=`, `SHA256=`, `IMPHASH=`,
    /// digests in uppercase as Sysmon writes them), so a rule's `Hashes|contains: 'MD5=...'`
    /// reads the same whichever shape the event arrived in. `None` when there is no hash.
    pub fn hash_list(&self) -> Option<std::borrow::Cow<'_, str>> {
        if let Some(hashes) = &self.hashes {
            return Some(std::borrow::Cow::Borrowed(hashes));
        }
        let parts = [
            ("SHA1", self.sha1.as_ref()),
            ("MD5", self.md5.as_ref()),
            ("SHA256", self.sha256.as_ref()),
            ("IMPHASH", self.imphash.as_ref()),
        ];
        let mut list = String::new();
        for (name, digest) in parts {
            if let Some(digest) = digest {
                if !list.is_empty() {
                    list.push(',');
                }
                list.push_str(name);
                list.push('=');
                list.push_str(&digest.to_ascii_uppercase());
            }
        }
        (!list.is_empty()).then_some(std::borrow::Cow::Owned(list))
    }
}
