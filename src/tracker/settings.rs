//! The tracker's settings: its config with the units the detectors count in.

use super::{DAY_MS, TrackerConfig};

/// The tracker's settings, from `tracker` in the config (its durations typed when the file
/// is read).
#[derive(Debug, Clone)]
pub struct Settings {
    pub retention_ms: i64,
    pub min_records: usize,
    pub beacon_max_jitter: f64,
    pub beacon_min_interval_ms: i64,
    pub beacon_public_only: bool,
    pub scan_distinct_ports: usize,
    pub scan_distinct_hosts: usize,
}

impl Settings {
    pub fn from_config(config: &TrackerConfig) -> Settings {
        Settings {
            retention_ms: i64::from(config.retention_days) * DAY_MS,
            min_records: config.min_records,
            beacon_max_jitter: config.beacon_max_jitter,
            beacon_min_interval_ms: config.beacon_min_interval.as_millis_i64(),
            beacon_public_only: config.beacon_public_only,
            scan_distinct_ports: config.scan_distinct_ports,
            scan_distinct_hosts: config.scan_distinct_hosts,
        }
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::from_config(&TrackerConfig::default())
    }
}
