//! The in-memory summary of the records within retention, and the detectors that read it as
//! each record is added: beaconing, low-and-slow port scans and sweeps, first-seen process
//! trees.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

// Keys are hosts, addresses and ports from our own sensors, hashed per event: FxHash is
// several times cheaper than SipHash here, and nothing outside chooses the keys to collide.
use rustc_hash::FxHashMap as HashMap;

use super::finding::Finding;
use super::record::Facts;
use super::{BehaviourRecord, DAY_MS, DayCounts, MAX_AHEAD_MS, Settings};
use crate::net::is_public;

/// Connection times kept per destination for beacon analysis.
const BEACON_WINDOW: usize = 64;

/// What the tracker knows, summarised from the records within retention. Maps are nested by
/// entity so a lookup borrows the event's strings instead of building a key.
#[derive(Debug, Default)]
pub struct TrackerState {
    /// Records per kind, per entity, per day, so counts can age out day by day.
    pub(super) counts: HashMap<&'static str, HashMap<String, BTreeMap<i64, u64>>>,
    /// Recent connection times per host, per (address, port).
    pub(super) flows: HashMap<String, HashMap<(IpAddr, u16), VecDeque<i64>>>,
    /// Ports tried per host, per address, with the last time each was.
    pub(super) ports: HashMap<String, HashMap<IpAddr, HashMap<u16, i64>>>,
    /// Internal addresses tried per host, per port.
    pub(super) sweeps: HashMap<String, HashMap<u16, HashMap<IpAddr, i64>>>,
    /// Parent→child pairs per host: the last time each was seen and the last time a record of
    /// it was stored (refreshed daily, so a pair in daily use never ages out of storage).
    pub(super) trees: HashMap<String, HashMap<String, (i64, i64)>>,
    /// Counts not yet handed to storage.
    pub(super) unsaved: DayCounts,
    /// Earlier connections that became worth storing with the current one: (time, address,
    /// port), for the host of the record being added.
    pub(super) backfill: Vec<(i64, IpAddr, u16)>,
    /// (detector, key) already reported, with when; a pattern is reported once per retention.
    pub(super) reported: HashMap<(&'static str, String), i64>,
    pub(super) newest: i64,
    pub(super) pruned_at: i64,
    /// The wall clock when last read (read again only for a record beyond what it allows).
    pub(super) clock_ms: i64,
}

/// The entry for `key`, created empty when missing; the key is copied only then.
pub(super) fn slot<'a, V: Default>(map: &'a mut HashMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    match map.get_mut(key) {
        Some(value) => value,
        None => unreachable!("inserted above"),
    }
}

pub(super) fn mean_and_jitter(times: &VecDeque<i64>) -> Option<(f64, f64)> {
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
    pub(super) fn add(
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

    pub(super) fn count(&self, entity: &str, kind: &'static str) -> u64 {
        self.counts
            .get(kind)
            .and_then(|entities| entities.get(entity))
            .map_or(0, |days| days.values().sum())
    }

    /// Forgets what is older than the retention, by the newest event time seen.
    pub(super) fn prune(&mut self, settings: &Settings) {
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
