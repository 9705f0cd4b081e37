//! What an event leaves in the tracker: one behaviour record (host, kind, subject, event time),
//! and the parts of it the detectors read.

use std::net::IpAddr;

use super::BehaviourRecord;
use crate::event::{Event, EventKind};
use crate::net::registered_domain;

pub(super) fn host_of(event: &Event) -> String {
    event.host.clone().unwrap_or_default()
}

/// The record an event leaves, if it leaves one.
pub fn record_of(event: &Event) -> Option<BehaviourRecord> {
    let lower = |v: &Option<String>| v.as_deref().unwrap_or("").to_ascii_lowercase();
    let (entity, kind, subject) = match event.kind {
        EventKind::ProcessCreate => (
            host_of(event),
            "spawn",
            format!("{}>{}", lower(&event.parent_name), lower(&event.name)),
        ),
        EventKind::NetworkConnection => (
            host_of(event),
            "connect",
            format!("{}|{}", event.remote_ip?, event.remote_port.unwrap_or(0)),
        ),
        EventKind::DnsQuery => (
            host_of(event),
            "resolve",
            registered_domain(&lower(&event.query_name)),
        ),
        EventKind::Login => (
            lower(&event.user),
            "login",
            format!(
                "{}|{}",
                host_of(event),
                event.source_ip.map(|ip| ip.to_string()).unwrap_or_default()
            ),
        ),
    };
    Some(BehaviourRecord {
        ts: event.timestamp_ms,
        entity,
        kind,
        subject,
    })
}

/// The parts of a record the detectors use, parsed once.
pub(super) enum Facts<'a> {
    Connect { ip: IpAddr, port: u16 },
    Spawn { pair: &'a str },
    Other,
}

pub(super) fn facts(record: &BehaviourRecord) -> Facts<'_> {
    match record.kind {
        "connect" => record
            .subject
            .rsplit_once('|')
            .and_then(|(ip, port)| {
                Some(Facts::Connect {
                    ip: ip.parse().ok()?,
                    port: port.parse().ok()?,
                })
            })
            .unwrap_or(Facts::Other),
        "spawn" => Facts::Spawn {
            pair: &record.subject,
        },
        _ => Facts::Other,
    }
}
