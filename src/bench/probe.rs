//! Publish-to-commit latency: the producer stamps each event id with its send time, and the
//! probe reads it back when the engine commits the event's batch.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::engine::drive::CommitProbe;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub(super) fn of(mut millis: Vec<f64>) -> Latency {
        if millis.is_empty() {
            return Latency::default();
        }
        millis.sort_by(f64::total_cmp);
        let at = |q: f64| millis[((millis.len() - 1) as f64 * q).round() as usize];
        Latency {
            samples: millis.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            self.p50, self.p99, self.max, self.samples
        )
    }
}

pub(super) fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// Collects publish-to-commit latencies from the event ids the producer stamped.
#[derive(Default)]
pub(super) struct LatencyProbe {
    pub(super) recorded: Vec<f64>,
    pub(super) dispatched: Vec<f64>,
}

fn sent_at(event_id: &str) -> Option<u128> {
    event_id.rsplit('-').next()?.parse().ok()
}

impl CommitProbe for LatencyProbe {
    fn active(&self) -> bool {
        true
    }
    fn recorded(&mut self, event_ids: &[String]) {
        let now = now_micros();
        self.recorded.extend(
            event_ids
                .iter()
                .filter_map(|id| sent_at(id))
                .map(|sent| now.saturating_sub(sent) as f64 / 1000.0),
        );
    }
    fn dispatched(&mut self, event_ids: &[String]) {
        let now = now_micros();
        self.dispatched.extend(
            event_ids
                .iter()
                .filter_map(|id| sent_at(id))
                .map(|sent| now.saturating_sub(sent) as f64 / 1000.0),
        );
    }
}
