//! A pattern a detector saw, and the detection it becomes.

use std::net::IpAddr;
use std::sync::Arc;

use crate::detection::{Detection, Entity, Severity, Stage};
use crate::event::Event;

/// A pattern a detector saw.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Finding {
    Beacon {
        host: String,
        ip: IpAddr,
        port: u16,
        interval_s: f64,
        jitter: f64,
        connections: usize,
    },
    PortScan {
        host: String,
        ip: IpAddr,
        ports: usize,
        span_ms: i64,
    },
    HostSweep {
        host: String,
        port: u16,
        addresses: usize,
        span_ms: i64,
    },
    FirstSeen {
        host: String,
        pair: String,
    },
}

fn span(ms: i64) -> String {
    let hours = ms as f64 / 3_600_000.0;
    if hours >= 48.0 {
        format!("{:.1} days", hours / 24.0)
    } else {
        format!("{hours:.1} hours")
    }
}

impl Finding {
    /// (detector id, the key it is reported once for).
    pub(super) fn key(&self) -> (&'static str, String) {
        match self {
            Finding::Beacon { host, ip, port, .. } => {
                ("tracker-beaconing", format!("{host}|{ip}|{port}"))
            }
            Finding::PortScan { host, ip, .. } => ("tracker-port-scan", format!("{host}|{ip}")),
            Finding::HostSweep { host, port, .. } => {
                ("tracker-host-sweep", format!("{host}|{port}"))
            }
            Finding::FirstSeen { host, pair } => ("tracker-first-seen", format!("{host}|{pair}")),
        }
    }

    pub(super) fn detection(&self, event: &Event) -> Detection {
        let (id, _) = self.key();
        let (severity, title, entity, score) = match self {
            Finding::Beacon {
                host,
                ip,
                port,
                interval_s,
                jitter,
                connections,
            } => (
                Severity::High,
                format!(
                    "Beaconing: {host} connects to {ip}:{port} every {interval_s:.0} s (±{:.0}%, {connections} connections)",
                    jitter * 100.0
                ),
                Some(Entity::Address { ip: *ip }),
                (1.0 - jitter).clamp(0.0, 1.0),
            ),
            Finding::PortScan {
                host,
                ip,
                ports,
                span_ms,
            } => (
                Severity::High,
                format!(
                    "Low-and-slow port scan: {host} tried {ports} ports on {ip} over {}",
                    span(*span_ms)
                ),
                Some(Entity::Address { ip: *ip }),
                0.9,
            ),
            Finding::HostSweep {
                host,
                port,
                addresses,
                span_ms,
            } => (
                Severity::High,
                format!(
                    "Low-and-slow sweep: {host} tried port {port} on {addresses} internal addresses over {}",
                    span(*span_ms)
                ),
                event.remote_ip.map(|ip| Entity::Address { ip }),
                0.9,
            ),
            Finding::FirstSeen { host, pair } => (
                Severity::Low,
                format!("First time on {host}: {}", pair.replace('>', " started ")),
                event.pid.map(|pid| Entity::Process {
                    pid,
                    name: event.name.clone(),
                }),
                0.5,
            ),
        };
        Detection {
            event_id: event.id.clone(),
            rule: Arc::from(id),
            stage: Stage::Tracker,
            severity,
            status: crate::detection::RuleStatus::Stable,
            title,
            tags: Arc::from(vec!["tracker".to_string()]),
            entity,
            score: Some(score),
            intel: Vec::new(),
            attribution: None,
        }
    }
}
