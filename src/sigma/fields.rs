//! The one table where Sigma field names meet palisade's typed event fields.
//!
//! A Sigma rule names fields as Sysmon and Windows write them (`Image`, `CommandLine`, ...), or
//! as the Linux and macOS taxonomies do. Each name maps to one typed [`Field`] for the event
//! kinds that carry it; normalization fills those fields from every input shape (flat, ECS,
//! Winlogbeat's `winlog.event_data`). docs/sigma.md prints the same table.

use crate::event::{EventKind, Field};

/// One row of the mapping: a Sigma field name, the event field it reads, and the event kinds
/// on which the name means that field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigmaField {
    pub sigma: &'static str,
    pub field: Field,
    pub kinds: &'static [EventKind],
}

use EventKind::{DnsQuery, Login, NetworkConnection, ProcessCreate};

const PROCESS: &[EventKind] = &[ProcessCreate];
const NETWORK: &[EventKind] = &[NetworkConnection];
const DNS: &[EventKind] = &[DnsQuery];
const LOGIN: &[EventKind] = &[Login];
const PROCESS_NETWORK_DNS: &[EventKind] = &[ProcessCreate, NetworkConnection, DnsQuery];
const ANY: &[EventKind] = &[ProcessCreate, NetworkConnection, DnsQuery, Login];

/// Every Sigma field name palisade can run, in the order docs/sigma.md lists them.
pub const TABLE: &[SigmaField] = &[
    row("Image", Field::Image, PROCESS_NETWORK_DNS),
    row("CommandLine", Field::Cmdline, PROCESS),
    row("ProcessId", Field::Pid, PROCESS_NETWORK_DNS),
    row("ParentProcessId", Field::Ppid, PROCESS),
    row("User", Field::User, &[ProcessCreate, Login]),
    row("Hashes", Field::ProcessHash, PROCESS),
    row("DestinationIp", Field::RemoteIp, NETWORK),
    row("DestinationPort", Field::RemotePort, NETWORK),
    row("SourcePort", Field::LocalPort, NETWORK),
    row("Protocol", Field::Protocol, NETWORK),
    row("QueryName", Field::QueryName, DNS),
    row("query", Field::QueryName, DNS),
    row("IpAddress", Field::SourceIp, LOGIN),
    row("Computer", Field::Host, ANY),
];

const fn row(sigma: &'static str, field: Field, kinds: &'static [EventKind]) -> SigmaField {
    SigmaField {
        sigma,
        field,
        kinds,
    }
}

/// Why a field name cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldProblem {
    /// No input shape carries a field of this name.
    Unknown,
    /// The name is known, but not for these event kinds (e.g. `QueryName` in a process rule).
    NotForKinds { kinds: Vec<EventKind> },
}

/// The event field a Sigma field name reads on events of `kinds`. The name must be carried for
/// every one of the kinds (a rule that runs on events without the field could never be exact).
pub fn resolve(name: &str, kinds: &[EventKind]) -> Result<Field, FieldProblem> {
    let mut found_any = false;
    for row in TABLE.iter().filter(|row| row.sigma == name) {
        found_any = true;
        if kinds.iter().all(|kind| row.kinds.contains(kind)) {
            return Ok(row.field);
        }
    }
    if found_any {
        Err(FieldProblem::NotForKinds {
            kinds: kinds.to_vec(),
        })
    } else {
        Err(FieldProblem::Unknown)
    }
}
