//! The tracker's config type. The config module, above this one, assembles it into
//! `palisade.yaml` and checks it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The behaviour tracker (`docs/anomaly.md#the-behaviour-tracker`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct TrackerConfig {
    /// Record behaviour and run the detectors.
    pub enabled: bool,
    /// Records older than this (by event time) are forgotten.
    pub retention_days: u32,
    /// No analysis of an entity with fewer records than this.
    pub min_records: usize,
    /// Beaconing: the largest spread of intervals (standard deviation over mean) still called
    /// regular.
    pub beacon_max_jitter: f64,
    /// Beaconing: intervals shorter than this are bursts, not beacons.
    pub beacon_min_interval: crate::duration::Span,
    /// Beaconing: only to public addresses (internal monitoring polls regularly too).
    pub beacon_public_only: bool,
    /// Low-and-slow scanning: distinct ports on one address from one host.
    pub scan_distinct_ports: usize,
    /// Low-and-slow scanning: distinct addresses on one port from one host.
    pub scan_distinct_hosts: usize,
}

impl Default for TrackerConfig {
    fn default() -> TrackerConfig {
        TrackerConfig {
            enabled: true,
            retention_days: 30,
            min_records: 10,
            beacon_max_jitter: 0.2,
            beacon_min_interval: const { crate::duration::Span::secs(10) },
            beacon_public_only: true,
            scan_distinct_ports: 100,
            scan_distinct_hosts: 50,
        }
    }
}
