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

mod config;
pub mod store;

use std::collections::{BTreeMap, VecDeque};

// Keys are hosts, addresses and ports from our own sensors, hashed per event: FxHash is
// several times cheaper than SipHash here, and nothing outside chooses the keys to collide.
use rustc_hash::FxHashMap as HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use crate::detection::{Detection, Entity, Severity, Stage};
use crate::event::{Event, EventKind};
use crate::net::{is_public, registered_domain};

pub use config::TrackerConfig;
// The rows the state writer stores live with it.
pub use crate::state::rows::{BehaviourRecord, DayCounts};
pub use store::{Stored, load_records};

const DAY_MS: i64 = 86_400_000;
/// How far past the wall clock a record may be and still move the retention clock.
pub use crate::event::MAX_AHEAD_MS;
/// Connection times kept per destination for beacon analysis.
const BEACON_WINDOW: usize = 64;

/// The tracker's settings, parsed from `tracker` in the config.
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

/// What the tracker knows, summarised from the records within retention. Maps are nested by
/// entity so a lookup borrows the event's strings instead of building a key.
#[derive(Debug, Default)]
pub struct TrackerState {
    /// Records per kind, per entity, per day, so counts can age out day by day.
    counts: HashMap<&'static str, HashMap<String, BTreeMap<i64, u64>>>,
    /// Recent connection times per host, per (address, port).
    flows: HashMap<String, HashMap<(IpAddr, u16), VecDeque<i64>>>,
    /// Ports tried per host, per address, with the last time each was.
    ports: HashMap<String, HashMap<IpAddr, HashMap<u16, i64>>>,
    /// Internal addresses tried per host, per port.
    sweeps: HashMap<String, HashMap<u16, HashMap<IpAddr, i64>>>,
    /// Parent→child pairs per host: the last time each was seen and the last time a record of
    /// it was stored (refreshed daily, so a pair in daily use never ages out of storage).
    trees: HashMap<String, HashMap<String, (i64, i64)>>,
    /// Counts not yet handed to storage.
    unsaved: DayCounts,
    /// Earlier connections that became worth storing with the current one: (time, address,
    /// port), for the host of the record being added.
    backfill: Vec<(i64, IpAddr, u16)>,
    /// (detector, key) already reported, with when; a pattern is reported once per retention.
    reported: HashMap<(&'static str, String), i64>,
    newest: i64,
    pruned_at: i64,
    /// The wall clock when last read (read again only for a record beyond what it allows).
    clock_ms: i64,
}

/// The entry for `key`, created empty when missing; the key is copied only then.
fn slot<'a, V: Default>(map: &'a mut HashMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    match map.get_mut(key) {
        Some(value) => value,
        None => unreachable!("inserted above"),
    }
}

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

fn host_of(event: &Event) -> String {
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

fn mean_and_jitter(times: &VecDeque<i64>) -> Option<(f64, f64)> {
    let intervals = || {
        times
            .iter()
            .zip(times.iter().skip(1))
            .map(|(a, b)| (b - a) as f64)
    };
    let n = times.len().checked_sub(1).filter(|n| *n > 0)? as f64;
    let mean = intervals().sum::<f64>() / n;
    if mean <= 0.0 {
        return None;
    }
    let variance = intervals().map(|i| (i - mean).powi(2)).sum::<f64>() / n;
    Some((mean, variance.sqrt() / mean))
}

/// The parts of a record the detectors use, parsed once.
enum Facts<'a> {
    Connect { ip: IpAddr, port: u16 },
    Spawn { pair: &'a str },
    Other,
}

fn facts(record: &BehaviourRecord) -> Facts<'_> {
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

fn pruned<K: std::hash::Hash + Eq, V>(
    map: &mut HashMap<K, V>,
    keep: impl FnMut(&K, &mut V) -> bool,
) {
    map.retain(keep);
}

impl TrackerState {
    /// Adds a record; returns what the detectors found in the summary it changed.
    /// `live` records are counted (and the count queued for storage) and say whether they
    /// need storing; restored ones were counted before.
    fn add(
        &mut self,
        record: &BehaviourRecord,
        facts: Facts<'_>,
        settings: &Settings,
        live: bool,
    ) -> (Vec<Finding>, bool) {
        let mut findings = Vec::new();
        let mut store = false;
        let ts = record.ts;
        let host = record.entity.as_str();
        // Event time is untrusted: a record dated beyond the wall clock (a sensor's broken clock,
        // a forged event, a store written before the intake clamped such times) is kept but
        // never moves the retention clock, or one event dated 9000-01-01 would age out every
        // other host's history at the next prune.
        if ts > self.newest {
            if ts > self.clock_ms.saturating_add(MAX_AHEAD_MS) {
                self.clock_ms = crate::event::now_ms();
            }
            if ts <= self.clock_ms.saturating_add(MAX_AHEAD_MS) {
                self.newest = ts;
            }
        }
        if live {
            let day = ts.div_euclid(DAY_MS);
            *slot(self.counts.entry(record.kind).or_default(), host)
                .entry(day)
                .or_default() += 1;
            *slot(&mut self.unsaved, host)
                .entry((record.kind, day))
                .or_default() += 1;
        }
        match facts {
            Facts::Connect { ip, port } => {
                // A connection is stored once it is part of something a detector counts: the
                // second to the same destination (a possible beacon), the second port on one
                // address (a possible scan), the second internal address on one port (a
                // possible sweep); the first of the two is stored then too. A one-off
                // connection, most of a browser's, is not stored: it counts towards nothing yet.
                let mut earlier: Vec<(i64, IpAddr, u16)> = Vec::new();
                if is_public(ip) || !settings.beacon_public_only {
                    let times = slot(&mut self.flows, host).entry((ip, port)).or_default();
                    let at = times.partition_point(|t| *t <= ts);
                    times.insert(at, ts);
                    if times.len() >= 2 {
                        store = true;
                        if times.len() == 2 {
                            let other = if times[0] == ts { times[1] } else { times[0] };
                            earlier.push((other, ip, port));
                        }
                    }
                    if times.len() > BEACON_WINDOW {
                        times.pop_front();
                    }
                    if times.len() >= settings.min_records
                        && let Some((mean, jitter)) = mean_and_jitter(times)
                        && jitter <= settings.beacon_max_jitter
                        && mean >= settings.beacon_min_interval_ms as f64
                    {
                        findings.push(Finding::Beacon {
                            host: host.to_string(),
                            ip,
                            port,
                            interval_s: mean / 1000.0,
                            jitter,
                            connections: times.len(),
                        });
                    }
                }
                let tried = slot(&mut self.ports, host).entry(ip).or_default();
                let new_port = tried.insert(port, ts).is_none();
                if tried.len() >= 2 {
                    store = true;
                    if tried.len() == 2
                        && new_port
                        && let Some((other, at)) = tried.iter().find(|(p, _)| **p != port)
                    {
                        earlier.push((*at, ip, *other));
                    }
                }
                if tried.len() >= settings.scan_distinct_ports.max(settings.min_records) {
                    let first = tried.values().min().copied().unwrap_or(ts);
                    findings.push(Finding::PortScan {
                        host: host.to_string(),
                        ip,
                        ports: tried.len(),
                        span_ms: ts - first,
                    });
                }
                if !is_public(ip) {
                    let swept = slot(&mut self.sweeps, host).entry(port).or_default();
                    let new_address = swept.insert(ip, ts).is_none();
                    if swept.len() >= 2 {
                        store = true;
                        if swept.len() == 2
                            && new_address
                            && let Some((other, at)) = swept.iter().find(|(a, _)| **a != ip)
                        {
                            earlier.push((*at, *other, port));
                        }
                    }
                    if swept.len() >= settings.scan_distinct_hosts.max(settings.min_records) {
                        let first = swept.values().min().copied().unwrap_or(ts);
                        findings.push(Finding::HostSweep {
                            host: host.to_string(),
                            port,
                            addresses: swept.len(),
                            span_ms: ts - first,
                        });
                    }
                }
                if live {
                    self.backfill.extend(earlier);
                }
            }
            Facts::Spawn { pair } => {
                let history = self.count(host, "spawn");
                let trees = slot(&mut self.trees, host);
                match trees.get_mut(pair) {
                    Some((seen, stored)) => {
                        *seen = (*seen).max(ts);
                        if ts - *stored >= DAY_MS {
                            *stored = ts;
                            store = true;
                        }
                    }
                    None => {
                        store = true;
                        // The record just counted is this one: history before it is one less.
                        if history > settings.min_records as u64 {
                            findings.push(Finding::FirstSeen {
                                host: host.to_string(),
                                pair: pair.to_string(),
                            });
                        }
                        trees.insert(pair.to_string(), (ts, ts));
                    }
                }
            }
            Facts::Other => {}
        }
        (findings, store)
    }

    fn count(&self, entity: &str, kind: &'static str) -> u64 {
        self.counts
            .get(kind)
            .and_then(|entities| entities.get(entity))
            .map_or(0, |days| days.values().sum())
    }

    /// Forgets what is older than the retention, by the newest event time seen.
    fn prune(&mut self, settings: &Settings) {
        let horizon = self.newest - settings.retention_ms;
        let first_day = horizon.div_euclid(DAY_MS);
        for entities in self.counts.values_mut() {
            pruned(entities, |_, days| {
                days.retain(|day, _| *day >= first_day);
                !days.is_empty()
            });
        }
        pruned(&mut self.flows, |_, flows| {
            pruned(flows, |_, times| {
                while times.front().is_some_and(|t| *t < horizon) {
                    times.pop_front();
                }
                !times.is_empty()
            });
            !flows.is_empty()
        });
        pruned(&mut self.ports, |_, addresses| {
            pruned(addresses, |_, ports| {
                ports.retain(|_, t| *t >= horizon);
                !ports.is_empty()
            });
            !addresses.is_empty()
        });
        pruned(&mut self.sweeps, |_, by_port| {
            pruned(by_port, |_, addresses| {
                addresses.retain(|_, t| *t >= horizon);
                !addresses.is_empty()
            });
            !by_port.is_empty()
        });
        pruned(&mut self.trees, |_, pairs| {
            pairs.retain(|_, (seen, _)| *seen >= horizon);
            !pairs.is_empty()
        });
        self.reported.retain(|_, t| *t >= horizon);
        self.pruned_at = self.newest;
    }
}

/// A pattern a detector saw.
#[derive(Debug, Clone, PartialEq)]
enum Finding {
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
    fn key(&self) -> (&'static str, String) {
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

    fn detection(&self, event: &Event) -> Detection {
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
            title,
            tags: Arc::from(vec!["tracker".to_string()]),
            entity,
            score: Some(score),
            intel: Vec::new(),
            attribution: None,
        }
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
