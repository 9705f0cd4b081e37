//! The long-term behaviour tracker: what each host did over days, for the attacker who moves
//! slowly on purpose and stays under every per-event rule.
//!
//! ```text
//! event ──► observe ──► behaviour record (to SQLite with the batch) ──► detectors ──► detection
//!                           ▲ at start: records within retention loaded back
//! ```
//!
//! Every event adds one record (host, kind, subject, event time) to an in-memory summary; what a
//! restart needs of it is stored with each batch (connections that are part of a possible
//! beacon, scan or sweep, process trees when new or once a day, and per-day counts of
//! everything). The detectors read the summary: beaconing (regular intervals to one destination),
//! low-and-slow scanning (distinct ports on one address, or distinct internal addresses on one
//! port, accumulated over the retention period) and first-seen process trees (a parent→child
//! pair new for a host that has history). Time is always event time, never the clock, so
//! replays, tests and restarts see the same thing; the clock only bounds how far ahead of it
//! an event may move retention ([`MAX_AHEAD_MS`]). Rules ask the same summary through Rhai
//! functions (`first_seen`, `behaviour_count`, `distinct_ports`, `beacon_interval`).
//!
//! One idea per file: `record` (what an event leaves), `summary` (the in-memory summary and the
//! detectors that read it), `finding` (a pattern seen and its detection), `settings` and
//! `config`, `store` (loading records back); this file is the shared handle that ties them.

mod config;
mod finding;
mod record;
mod settings;
pub mod store;
mod summary;

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use crate::detection::Detection;
use crate::event::{Event, EventKind};
use record::{Facts, facts};
pub use summary::TrackerState;
use summary::{mean_and_jitter, slot};

pub use config::TrackerConfig;
pub use record::record_of;
pub use settings::Settings;
// The rows the state writer stores live with it.
pub use crate::state::rows::{BehaviourRecord, DayCounts};
pub use store::{Stored, load_records};

const DAY_MS: i64 = 86_400_000;
/// How far past the wall clock a record may be and still move the retention clock.
pub use crate::event::MAX_AHEAD_MS;

/// Shared by a pipeline's tracker stage and its rules' Rhai functions.
#[derive(Clone)]
pub struct TrackerHandle {
    state: Arc<RwLock<TrackerState>>,
    settings: Arc<Settings>,
    /// The horizon of the last prune not yet passed on to storage (`i64::MIN`: none).
    pruned_to: Arc<AtomicI64>,
}

impl Default for TrackerHandle {
    fn default() -> TrackerHandle {
        TrackerHandle::new(Settings::default())
    }
}

impl TrackerHandle {
    pub fn new(settings: Settings) -> TrackerHandle {
        TrackerHandle {
            state: Arc::new(RwLock::new(TrackerState::default())),
            settings: Arc::new(settings),
            pruned_to: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, TrackerState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, TrackerState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuilds the summary from stored records (at start), marking the patterns they show as
    /// already reported: they were, before the restart.
    pub fn restore(&self, stored: &Stored) {
        let mut state = self.write();
        for (entity, kind, day, count) in &stored.days {
            let Some(kind) = store::kind_of(kind) else {
                continue;
            };
            *slot(state.counts.entry(kind).or_default(), entity)
                .entry(*day)
                .or_default() += u64::try_from(*count).unwrap_or(0);
        }
        // A connection may have been stored twice (with its own event, and again as the
        // earlier half of a pair); replaying it twice would fake an interval of zero.
        let mut records: Vec<&BehaviourRecord> = stored.records.iter().collect();
        records.sort_by(|a, b| (a.ts, &a.entity, &a.subject).cmp(&(b.ts, &b.entity, &b.subject)));
        records.dedup_by(|a, b| a.ts == b.ts && a.entity == b.entity && a.subject == b.subject);
        for record in records {
            let _ = state.add(record, facts(record), &self.settings, false);
        }
        let reported = &stored.reported;
        for (detector, key, at) in reported {
            let Some(detector) = crate::detection::BUILT_IN_DETECTORS
                .iter()
                .copied()
                .find(|d| d.starts_with("tracker-") && *d == detector.as_str())
            else {
                continue;
            };
            state.reported.insert((detector, key.clone()), *at);
        }
        state.prune(&self.settings);
    }

    /// Records the event and runs the detectors. The record goes to `records` when storage
    /// needs it (a connection that is part of a possible beacon, scan or sweep, with the
    /// earlier one that made it so; a process tree new for the host, or not stored for a day), its
    /// count to the counts [`TrackerHandle::take_counts`] hands over; new findings to `detections` and `reported` (stored too, so a restart
    /// does not report them again).
    pub fn observe(
        &self,
        event: &Event,
        records: &mut Vec<BehaviourRecord>,
        detections: &mut Vec<Detection>,
        reported: &mut Vec<(String, String, i64)>,
    ) {
        let Some(record) = record_of(event) else {
            return;
        };
        let facts = match (event.kind, event.remote_ip) {
            (EventKind::NetworkConnection, Some(ip)) => Facts::Connect {
                ip,
                port: event.remote_port.unwrap_or(0),
            },
            (EventKind::ProcessCreate, _) => Facts::Spawn {
                pair: &record.subject,
            },
            _ => Facts::Other,
        };
        let mut state = self.write();
        let (findings, store) = state.add(&record, facts, &self.settings, true);
        for finding in findings {
            let (detector, key) = finding.key();
            if state.reported.contains_key(&(detector, key.clone())) {
                continue;
            }
            state.reported.insert((detector, key.clone()), record.ts);
            reported.push((detector.to_string(), key, record.ts));
            detections.push(finding.detection(event));
        }
        // Once a day of event time: a prune walks every map, and retention is counted in days
        // anyway, so doing it more often would only add pauses.
        if state.newest - state.pruned_at > DAY_MS {
            state.prune(&self.settings);
            self.pruned_to
                .store(state.newest - self.settings.retention_ms, Ordering::Relaxed);
        }
        for (ts, ip, port) in std::mem::take(&mut state.backfill) {
            records.push(BehaviourRecord {
                ts,
                entity: record.entity.clone(),
                kind: "connect",
                subject: format!("{ip}|{port}"),
            });
        }
        if store {
            records.push(record);
        }
    }

    /// The newest event time the tracker's retention runs on (`None` before any record; times
    /// at or before 1970 say nothing about the clock either).
    pub fn newest(&self) -> Option<i64> {
        let newest = self.read().newest;
        (newest > 0).then_some(newest)
    }

    /// The counts added since the last call, for storage with the batch that ends now.
    pub fn take_counts(&self) -> DayCounts {
        std::mem::take(&mut self.write().unsaved)
    }

    /// Records of `kind` for `entity` within retention. Users are recorded in lowercase.
    pub fn behaviour_count(&self, entity: &str, kind: &str) -> i64 {
        let Some(kind) = store::kind_of(kind) else {
            return 0;
        };
        let state = self.read();
        state
            .count(entity, kind)
            .max(state.count(&entity.to_ascii_lowercase(), kind)) as i64
    }

    /// The retention horizon when the summary was pruned since the last call: stored records
    /// older than it can go too.
    pub fn take_pruned(&self) -> Option<i64> {
        let horizon = self.pruned_to.swap(i64::MIN, Ordering::Relaxed);
        (horizon != i64::MIN).then_some(horizon)
    }

    /// Whether `host` starting `child` from `parent` would be new, for a host with enough
    /// history to say so (false otherwise).
    pub fn first_seen(&self, host: &str, parent: &str, child: &str) -> bool {
        let state = self.read();
        let pair = format!(
            "{}>{}",
            parent.to_ascii_lowercase(),
            child.to_ascii_lowercase()
        );
        state.count(host, "spawn") >= self.settings.min_records as u64
            && !state.trees.get(host).is_some_and(|t| t.contains_key(&pair))
    }

    /// Distinct ports `host` tried on `address` within retention.
    pub fn distinct_ports(&self, host: &str, address: &str) -> i64 {
        let Ok(ip) = address.parse::<IpAddr>() else {
            return 0;
        };
        self.read()
            .ports
            .get(host)
            .and_then(|addresses| addresses.get(&ip))
            .map_or(0, |p| p.len() as i64)
    }

    /// The mean interval in seconds of `host`'s connections to `address:port` when they are
    /// regular (as the beaconing detector judges), else `None`.
    pub fn beacon_interval(&self, host: &str, address: &str, port: i64) -> Option<f64> {
        let ip = address.parse::<IpAddr>().ok()?;
        let port = u16::try_from(port).ok()?;
        let state = self.read();
        let times = state.flows.get(host)?.get(&(ip, port))?;
        if times.len() < self.settings.min_records {
            return None;
        }
        let (mean, jitter) = mean_and_jitter(times)?;
        (jitter <= self.settings.beacon_max_jitter).then_some(mean / 1000.0)
    }

    /// Registers the query functions rules may call.
    pub fn register(&self, engine: &mut rhai::Engine) {
        let t = self.clone();
        engine.register_fn(
            "first_seen",
            move |host: &str, parent: &str, child: &str| t.first_seen(host, parent, child),
        );
        let t = self.clone();
        engine.register_fn("behaviour_count", move |entity: &str, kind: &str| {
            t.behaviour_count(entity, kind)
        });
        let t = self.clone();
        engine.register_fn("distinct_ports", move |host: &str, address: &str| {
            t.distinct_ports(host, address)
        });
        let t = self.clone();
        engine.register_fn(
            "beacon_interval",
            move |host: &str, address: &str, port: i64| -> rhai::Dynamic {
                t.beacon_interval(host, address, port)
                    .map_or(rhai::Dynamic::UNIT, rhai::Dynamic::from_float)
            },
        );
        // Events without a host or name give `()`; the functions then answer "nothing known".
        engine.register_fn("first_seen", |_: (), _: &str, _: &str| false);
        engine.register_fn("first_seen", |_: &str, _: (), _: &str| false);
        engine.register_fn("behaviour_count", |_: (), _: &str| 0_i64);
        engine.register_fn("distinct_ports", |_: (), _: &str| 0_i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(ts: i64, host: &str, ip: &str, port: u16) -> Event {
        let mut event = Event::new(format!("e{ts}"), EventKind::NetworkConnection, ts);
        event.host = Some(host.into());
        event.remote_ip = ip.parse().ok();
        event.remote_port = Some(port);
        event
    }

    fn observe(tracker: &TrackerHandle, event: &Event) -> Vec<Detection> {
        let (mut records, mut detections, mut reported) = (Vec::new(), Vec::new(), Vec::new());
        tracker.observe(event, &mut records, &mut detections, &mut reported);
        detections
    }

    #[test]
    fn a_regular_flow_is_a_beacon_once_and_its_interval_is_known() {
        let tracker = TrackerHandle::default();
        let mut found = Vec::new();
        for k in 0..20 {
            let ts = 1_000_000 + k * 300_000 + (k % 2) * 5_000;
            found.extend(observe(
                &tracker,
                &connection(ts, "h", "198.51.100.9", 8443),
            ));
        }
        assert_eq!(found.len(), 1);
        assert_eq!(&*found[0].rule, "tracker-beaconing");
        let interval = tracker
            .beacon_interval("h", "198.51.100.9", 8443)
            .unwrap_or_default();
        assert!((interval - 300.0).abs() < 5.0, "{interval}");
        // Internal destinations are not judged by default.
        for k in 0..20 {
            observe(
                &tracker,
                &connection(1_000_000 + k * 60_000, "h", "10.0.0.5", 443),
            );
        }
        assert!(tracker.beacon_interval("h", "10.0.0.5", 443).is_none());
    }

    #[test]
    fn a_one_off_connection_is_not_stored_and_a_second_stores_both() {
        let tracker = TrackerHandle::default();
        let mut records = Vec::new();
        let (mut detections, mut reported) = (Vec::new(), Vec::new());
        let mut observe = |event: &Event, records: &mut Vec<BehaviourRecord>| {
            tracker.observe(event, records, &mut detections, &mut reported);
        };
        observe(&connection(1_000, "h", "198.51.100.9", 443), &mut records);
        observe(&connection(2_000, "h", "198.51.100.10", 443), &mut records);
        assert!(records.is_empty());
        observe(&connection(3_000, "h", "198.51.100.9", 443), &mut records);
        let stored: Vec<(i64, &str)> = records.iter().map(|r| (r.ts, r.subject.as_str())).collect();
        assert_eq!(
            stored,
            [(1_000, "198.51.100.9|443"), (3_000, "198.51.100.9|443")]
        );
        // A second port on an address (a scan in the making) stores the first port too.
        records.clear();
        observe(&connection(4_000, "h", "198.51.100.10", 22), &mut records);
        let stored: Vec<(i64, &str)> = records.iter().map(|r| (r.ts, r.subject.as_str())).collect();
        assert_eq!(
            stored,
            [(2_000, "198.51.100.10|443"), (4_000, "198.51.100.10|22")]
        );
    }

    #[test]
    fn what_is_older_than_the_retention_is_forgotten() {
        let tracker = TrackerHandle::default();
        let day = 86_400_000;
        for port in 0..50 {
            observe(&tracker, &connection(day, "h", "203.0.113.1", port));
        }
        assert_eq!(tracker.distinct_ports("h", "203.0.113.1"), 50);
        assert_eq!(tracker.behaviour_count("h", "connect"), 50);
        // 31 days later: the old ports and counts are gone, the new one is there.
        observe(&tracker, &connection(32 * day, "h", "203.0.113.1", 9999));
        assert_eq!(tracker.distinct_ports("h", "203.0.113.1"), 1);
        assert_eq!(tracker.behaviour_count("h", "connect"), 1);
        assert!(tracker.take_pruned().is_some());
    }

    /// Defect: one login dated 9000-01-01 from another host made every host's history older
    /// than the retention.
    #[test]
    fn a_far_future_event_does_not_age_out_other_hosts_history() {
        let tracker = TrackerHandle::default();
        let day = 86_400_000;
        let now = crate::event::now_ms();
        for port in 0..50 {
            observe(&tracker, &connection(now - day, "h", "203.0.113.1", port));
        }
        let mut login = Event::new("far", EventKind::Login, 221_845_392_000_000);
        login.host = Some("dc-01".into());
        login.user = Some("mallory".into());
        observe(&tracker, &login);
        // A day's worth of further events, so a prune is due by any clock.
        observe(
            &tracker,
            &connection(now + 2 * 3_600_000, "h", "203.0.113.1", 9999),
        );
        assert_eq!(tracker.distinct_ports("h", "203.0.113.1"), 51);
        assert_eq!(tracker.behaviour_count("h", "connect"), 51);
        assert!(tracker.newest().is_some_and(|n| n <= now + 2 * 3_600_000));
    }

    #[test]
    fn a_restored_tracker_does_not_report_again() {
        let first = TrackerHandle::default();
        let (mut records, mut detections, mut reported) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..12 {
            let event = connection(k * 60_000, "h", "198.51.100.9", 443);
            first.observe(&event, &mut records, &mut detections, &mut reported);
        }
        assert_eq!(detections.len(), 1);
        let second = TrackerHandle::default();
        let days = first
            .take_counts()
            .into_iter()
            .flat_map(|(entity, counts)| {
                counts
                    .into_iter()
                    .map(move |((kind, day), n)| (entity.clone(), kind.to_string(), day, n as i64))
            })
            .collect();
        second.restore(&Stored {
            records,
            days,
            reported,
        });
        assert!(observe(&second, &connection(12 * 60_000, "h", "198.51.100.9", 443)).is_empty());
    }
}
