//! The correlation stage: bounded windows per (correlation, group-by values), kept by event time.
//!
//! Each window holds entries `(event time, named rule, value)`, oldest first. An entry older
//! than the window's newest event time minus the `timespan` no longer counts. When a
//! correlation's condition holds, one detection is emitted, the group's window is emptied, and
//! the group stays quiet until a `timespan` after that event: "20 failed logins from one source
//! in 5 minutes" is one detection per source per 5 minutes, however many logins follow.
//!
//! Bounds: at most `max_groups` groups per correlation (the group seen least recently is evicted
//! first) and `max_values` entries per group (the oldest entry is evicted first). Evictions are
//! counted and logged, never silent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::detection::{Detection, Entity, Stage};
use crate::event::{Event, Field};

use super::{Correlation, CorrelationType};

/// The `sigma.correlation` limits, as the stage uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_groups: usize,
    pub max_values: usize,
}

impl Limits {
    pub fn from_config(config: &crate::sigma::CorrelationConfig) -> Limits {
        Limits {
            max_groups: config.max_groups.max(1),
            max_values: config.max_values.max(1),
        }
    }
}

/// How much the bounds have thrown away since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Whole groups evicted because a correlation had `max_groups` already.
    pub groups: u64,
    /// Entries evicted from a group that had `max_values` already.
    pub values: u64,
}

/// One counted detection in a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Event time, milliseconds since the epoch.
    pub ts: i64,
    /// Which of the correlation's named rules matched (its index in `rules`).
    pub rule: u32,
    /// The counted field's value (value_count only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// One group's window, as it is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    /// Oldest first.
    pub entries: Vec<Entry>,
    /// The group fired; events before this event time are part of the window that fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_until: Option<i64>,
    /// The newest event time the group saw.
    pub last: i64,
}

// The state writer stores these rows; they live with it.
pub use crate::state::rows::WindowRow;

type Key = Vec<String>;

/// One correlation's groups.
#[derive(Debug, Default)]
struct Windows {
    groups: HashMap<Key, GroupState>,
    /// Groups by the newest event time they saw, least recent first: eviction and expiry.
    order: BTreeMap<(i64, u64), Key>,
    /// Each group's place in `order`.
    places: HashMap<Key, (i64, u64)>,
    next: u64,
    /// The newest event time this correlation saw.
    watermark: i64,
    /// Groups changed since the last [`CorrelationHandle::take_changes`].
    dirty: HashSet<Key>,
}

impl Windows {
    fn touch(&mut self, key: &Key, last: i64) {
        if let Some(old) = self.places.remove(key) {
            self.order.remove(&old);
        }
        let place = (last, self.next);
        self.next += 1;
        self.order.insert(place, key.clone());
        self.places.insert(key.clone(), place);
    }

    fn remove(&mut self, key: &Key) {
        if let Some(place) = self.places.remove(key) {
            self.order.remove(&place);
        }
        self.groups.remove(key);
        self.dirty.insert(key.clone());
    }

    /// Drops the groups with nothing left in their window and no quiet period left.
    fn expire(&mut self, timespan: i64) {
        let horizon = self.watermark.saturating_sub(timespan);
        while let Some((&(last, _), key)) = self.order.first_key_value() {
            if last >= horizon {
                break;
            }
            let quiet = self
                .groups
                .get(key)
                .and_then(|g| g.quiet_until)
                .is_some_and(|q| q > self.watermark);
            if quiet {
                break;
            }
            let key = key.clone();
            self.remove(&key);
        }
    }

    /// The least recently seen group, to make room.
    fn evict_oldest(&mut self) -> bool {
        let Some(key) = self.order.first_key_value().map(|(_, k)| k.clone()) else {
            return false;
        };
        self.remove(&key);
        true
    }
}

struct State {
    correlations: Vec<Arc<Correlation>>,
    /// Rule id → (correlation, index of the rule in it).
    by_rule: HashMap<Arc<str>, Vec<(usize, u32)>>,
    /// Rules (and correlations) named only by correlations without `generate: true`: their
    /// own detections are counted, then dropped, as the specification's default says.
    hidden: HashSet<Arc<str>>,
    windows: Vec<Windows>,
    limits: Limits,
    evicted: Evicted,
    /// Stored rows that no loaded correlation can use, to delete.
    stale: Vec<WindowRow>,
    /// Scratch: (correlation, rule index) pairs hit by one event.
    hits: Vec<(usize, u32)>,
}

impl State {
    fn build(correlations: Vec<Correlation>, limits: Limits) -> State {
        let correlations: Vec<Arc<Correlation>> = correlations.into_iter().map(Arc::new).collect();
        let mut by_rule: HashMap<Arc<str>, Vec<(usize, u32)>> = HashMap::new();
        for (c, correlation) in correlations.iter().enumerate() {
            for (r, rule) in correlation.rules.iter().enumerate() {
                let index = u32::try_from(r).unwrap_or(u32::MAX);
                by_rule.entry(rule.clone()).or_default().push((c, index));
            }
        }
        let shown: HashSet<&Arc<str>> = correlations
            .iter()
            .filter(|c| c.generate)
            .flat_map(|c| &c.rules)
            .collect();
        let hidden = by_rule
            .keys()
            .filter(|id| !shown.contains(id))
            .cloned()
            .collect();
        let windows = correlations.iter().map(|_| Windows::default()).collect();
        State {
            correlations,
            by_rule,
            hidden,
            windows,
            limits,
            evicted: Evicted::default(),
            stale: Vec::new(),
            hits: Vec::new(),
        }
    }
}

/// The correlation stage, shared by a pipeline and whoever stores and restores its windows.
#[derive(Clone)]
pub struct CorrelationHandle {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for CorrelationHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CorrelationHandle").finish_non_exhaustive()
    }
}

impl CorrelationHandle {
    pub fn new(correlations: Vec<Correlation>, limits: Limits) -> CorrelationHandle {
        CorrelationHandle {
            state: Arc::new(Mutex::new(State::build(correlations, limits))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves counts that are still counts.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the detections `detections[first..]` (all of one event) and appends a detection
    /// for each correlation whose condition now holds. A correlation's detection is counted in
    /// turn by the correlations that name it (chaining). Then the detections of rules named
    /// only by correlations without `generate: true` are removed.
    pub fn observe(&self, event: &Event, detections: &mut Vec<Detection>, first: usize) {
        let mut state = self.lock();
        let state = &mut *state;
        if state.by_rule.is_empty() {
            return;
        }
        let mut from = first;
        // Cycles are refused when correlations are resolved; the bound is a second guard.
        for _ in 0..=state.correlations.len() {
            let to = detections.len();
            if from >= to {
                break;
            }
            state.round(event, detections, from, to);
            from = to;
        }
        if !state.hidden.is_empty() {
            let mut kept = first;
            for i in first..detections.len() {
                if !state.hidden.contains(&detections[i].rule) {
                    detections.swap(kept, i);
                    kept += 1;
                }
            }
            detections.truncate(kept);
        }
    }

    /// The windows changed since the last call, to be stored with the batch that changed them.
    pub fn take_changes(&self) -> Vec<WindowRow> {
        let mut state = self.lock();
        let state = &mut *state;
        let mut rows = std::mem::take(&mut state.stale);
        for (correlation, windows) in state.correlations.iter().zip(&mut state.windows) {
            if windows.dirty.is_empty() {
                continue;
            }
            let fingerprint = correlation.fingerprint();
            for key in windows.dirty.drain() {
                let state = windows
                    .groups
                    .get(&key)
                    .and_then(|g| serde_json::to_string(g).ok());
                rows.push(WindowRow {
                    correlation: correlation.id.to_string(),
                    fingerprint: fingerprint.clone(),
                    key: serde_json::to_string(&key).unwrap_or_default(),
                    state,
                });
            }
        }
        rows
    }

    /// Puts other correlation definitions in place (a reload): the windows of correlations
    /// whose definition is unchanged carry over, the others are dropped and deleted at the next
    /// write, as [`CorrelationHandle::restore`] does for stored rows.
    pub fn replace(&self, correlations: Vec<Correlation>, limits: Limits) {
        let rows = {
            let state = self.lock();
            let mut rows = state.stale.clone();
            for (correlation, windows) in state.correlations.iter().zip(&state.windows) {
                let fingerprint = correlation.fingerprint();
                for (key, group) in &windows.groups {
                    rows.push(WindowRow {
                        correlation: correlation.id.to_string(),
                        fingerprint: fingerprint.clone(),
                        key: serde_json::to_string(key).unwrap_or_default(),
                        state: serde_json::to_string(group).ok(),
                    });
                }
            }
            rows
        };
        let fresh = State::build(correlations, limits);
        {
            let mut state = self.lock();
            let evicted = state.evicted;
            *state = State { evicted, ..fresh };
        }
        self.restore(rows);
    }

    /// What the bounds have evicted so far.
    pub fn evicted(&self) -> Evicted {
        self.lock().evicted
    }

    /// How many groups each correlation holds, by id (for tests and the status output).
    pub fn groups(&self) -> Vec<(Arc<str>, usize)> {
        let state = self.lock();
        state
            .correlations
            .iter()
            .zip(&state.windows)
            .map(|(c, w)| (c.id.clone(), w.groups.len()))
            .collect()
    }

    /// A group's window, for tests.
    pub fn window(&self, correlation: &str, key: &[&str]) -> Option<GroupState> {
        let state = self.lock();
        let c = state
            .correlations
            .iter()
            .position(|c| &*c.id == correlation)?;
        let key: Key = key.iter().map(|k| (*k).to_string()).collect();
        state.windows.get(c)?.groups.get(&key).cloned()
    }

    /// Puts stored windows back. A row for a correlation no longer loaded, or one whose
    /// definition changed since (the fingerprint differs), or one that does not read back, is
    /// dropped and deleted at the next write: counting it into a different definition would
    /// fire on events that never met it. Returns how many rows were restored.
    pub fn restore(&self, rows: Vec<WindowRow>) -> usize {
        let mut state = self.lock();
        let state = &mut *state;
        let limits = state.limits;
        let mut restored = 0;
        let limit = crate::event::now_ms().saturating_add(crate::event::MAX_AHEAD_MS);
        for row in rows {
            let Some(c) = state
                .correlations
                .iter()
                .position(|c| *c.id == *row.correlation)
            else {
                state.stale.push(WindowRow { state: None, ..row });
                continue;
            };
            let correlation = state.correlations[c].clone();
            let group = (row.fingerprint == correlation.fingerprint())
                .then(|| {
                    let key: Key = serde_json::from_str(&row.key).ok()?;
                    let group: GroupState = serde_json::from_str(row.state.as_deref()?).ok()?;
                    // A window dated beyond the clock (a damaged file, or one written before
                    // the intake clamped such times) would move the watermark so far that no
                    // real event could be counted again.
                    (valid(&correlation, &key, &group) && group.last <= limit)
                        .then_some((key, group))
                })
                .flatten();
            let Some((key, mut group)) = group else {
                tracing::warn!(
                    correlation = %row.correlation,
                    "a stored correlation window does not fit the loaded correlation; dropped"
                );
                state.stale.push(WindowRow { state: None, ..row });
                continue;
            };
            let windows = &mut state.windows[c];
            if group.entries.len() > limits.max_values {
                let extra = group.entries.len() - limits.max_values;
                group.entries.drain(..extra);
                state.evicted.values += extra as u64;
            }
            windows.watermark = windows.watermark.max(group.last);
            windows.touch(&key, group.last);
            windows.groups.insert(key, group);
            restored += 1;
            while windows.groups.len() > limits.max_groups && windows.evict_oldest() {
                state.evicted.groups += 1;
            }
        }
        for (correlation, windows) in state.correlations.iter().zip(&mut state.windows) {
            windows.expire(correlation.timespan_ms);
        }
        restored
    }
}

/// Whether a stored window could have been written by this correlation.
fn valid(correlation: &Correlation, key: &Key, group: &GroupState) -> bool {
    key.len() == correlation.group_by.len()
        && group.entries.iter().all(|e| {
            (e.rule as usize) < correlation.rules.len()
                && e.ts <= group.last
                && (correlation.kind == CorrelationType::ValueCount) == e.value.is_some()
        })
        && group.entries.windows(2).all(|w| w[0].ts <= w[1].ts)
}

impl State {
    /// Counts the detections `detections[from..to]`, appending what fires.
    fn round(&mut self, event: &Event, detections: &mut Vec<Detection>, from: usize, to: usize) {
        self.hits.clear();
        for detection in detections.get(from..to).unwrap_or_default() {
            if let Some(found) = self.by_rule.get(&detection.rule) {
                for hit in found {
                    if !self.hits.contains(hit) {
                        self.hits.push(*hit);
                    }
                }
            }
        }
        if self.hits.is_empty() {
            return;
        }
        self.hits.sort_unstable();
        let hits = std::mem::take(&mut self.hits);
        let mut i = 0;
        while i < hits.len() {
            let c = hits[i].0;
            let end = hits[i..]
                .iter()
                .position(|h| h.0 != c)
                .map_or(hits.len(), |n| i + n);
            let rules: Vec<u32> = hits[i..end].iter().map(|h| h.1).collect();
            if let Some(found) = self.count(c, &rules, event) {
                detections.push(found);
            }
            i = end;
        }
        self.hits = hits;
    }

    /// Counts one event for correlation `c` (matched by its rules `rules`); the detection when
    /// the condition now holds.
    fn count(&mut self, c: usize, rules: &[u32], event: &Event) -> Option<Detection> {
        let correlation = self.correlations.get(c)?.clone();
        let limits = self.limits;
        let mut key: Key = Vec::with_capacity(correlation.group_by.len());
        for field in &correlation.group_by {
            // An event without a group-by value belongs to no group: counting all such events
            // together would make one group of unrelated sources.
            key.push(field.text(event)?.into_owned());
        }
        let value = match correlation.field {
            Some(field) => Some(field.text(event)?.into_owned()),
            None => None,
        };
        let ts = event.timestamp_ms;
        if ts > crate::event::now_ms().saturating_add(crate::event::MAX_AHEAD_MS) {
            // The intake clamps times ahead of the clock; one that still got here must not move
            // the watermark past every real event's window.
            return None;
        }
        let timespan = correlation.timespan_ms;
        let windows = self.windows.get_mut(c)?;
        windows.watermark = windows.watermark.max(ts);
        if ts < windows.watermark.saturating_sub(timespan) {
            // Older than any window still open: it cannot be counted with anything.
            return None;
        }
        windows.expire(timespan);
        if !windows.groups.contains_key(&key) {
            while windows.groups.len() >= limits.max_groups {
                if !windows.evict_oldest() {
                    break;
                }
                self.evicted.groups += 1;
                note_eviction("groups", &correlation.id, self.evicted.groups);
            }
        }
        let group = windows.groups.entry(key.clone()).or_default();
        if group.quiet_until.is_some_and(|q| ts < q) {
            return None;
        }
        group.quiet_until = None;
        group.last = group.last.max(ts);
        let horizon = group.last.saturating_sub(timespan);
        group.entries.retain(|e| e.ts >= horizon);
        match correlation.kind {
            CorrelationType::EventCount => {
                // An event matched by two named rules is still one event.
                insert(
                    &mut group.entries,
                    Entry {
                        ts,
                        rule: rules[0],
                        value: None,
                    },
                );
            }
            CorrelationType::ValueCount => {
                // A value seen again counts once, from its newest time.
                group.entries.retain(|e| e.value != value);
                insert(
                    &mut group.entries,
                    Entry {
                        ts,
                        rule: rules[0],
                        value,
                    },
                );
            }
            CorrelationType::Temporal => {
                for &rule in rules {
                    group.entries.retain(|e| e.rule != rule);
                    insert(
                        &mut group.entries,
                        Entry {
                            ts,
                            rule,
                            value: None,
                        },
                    );
                }
            }
            CorrelationType::TemporalOrdered => {
                for &rule in rules {
                    insert(
                        &mut group.entries,
                        Entry {
                            ts,
                            rule,
                            value: None,
                        },
                    );
                }
            }
        }
        if group.entries.len() > limits.max_values {
            let extra = group.entries.len() - limits.max_values;
            group.entries.drain(..extra);
            self.evicted.values += extra as u64;
            note_eviction("values", &correlation.id, self.evicted.values);
        }
        let count = match correlation.kind {
            CorrelationType::EventCount | CorrelationType::ValueCount => group.entries.len(),
            CorrelationType::Temporal => group.entries.len(),
            CorrelationType::TemporalOrdered => in_order(&group.entries),
        } as u64;
        let fired = correlation.holds(count);
        if fired {
            group.entries.clear();
            group.quiet_until = Some(ts.saturating_add(timespan));
        }
        let last = group.last;
        windows.touch(&key, last);
        windows.dirty.insert(key.clone());
        fired.then(|| detection(&correlation, event, &key))
    }
}

/// Inserts keeping the entries in event-time order (events may arrive out of order).
fn insert(entries: &mut Vec<Entry>, entry: Entry) {
    let at = entries.partition_point(|e| e.ts <= entry.ts);
    entries.insert(at, entry);
}

/// How many of the named rules, from the first, were seen in their order: the longest prefix of
/// `0, 1, 2, ...` that is a subsequence of the entries (taking each rule's earliest chance is
/// optimal for a subsequence).
fn in_order(entries: &[Entry]) -> usize {
    let mut next = 0u32;
    for entry in entries {
        if entry.rule == next {
            next += 1;
        }
    }
    next as usize
}

/// Logs evictions at 1, 2, 4, 8, ... so a flood is visible without a line per event.
fn note_eviction(what: &str, correlation: &str, total: u64) {
    if total.is_power_of_two() {
        tracing::warn!(
            correlation,
            evicted = total,
            "correlation {what} evicted to stay within the `sigma.correlation` bounds"
        );
    }
}

fn detection(correlation: &Correlation, event: &Event, key: &Key) -> Detection {
    Detection {
        event_id: event.id.clone(),
        rule: correlation.id.clone(),
        stage: Stage::Rule,
        severity: correlation.severity,
        title: correlation.title.clone(),
        tags: correlation.tags.clone(),
        entity: entity(&correlation.group_by, key),
        score: None,
        intel: Vec::new(),
        attribution: correlation.attribution.clone(),
        status: correlation.status,
    }
}

/// The entity a response acts on: the first group-by address, else the first group-by user.
fn entity(fields: &[Field], key: &Key) -> Option<Entity> {
    let address = fields
        .iter()
        .zip(key)
        .filter(|(f, _)| super::is_address(**f))
        .find_map(|(_, v)| v.parse().ok())
        .map(|ip| Entity::Address { ip });
    address.or_else(|| {
        fields
            .iter()
            .zip(key)
            .find(|(f, _)| **f == Field::User)
            .map(|(_, v)| Entity::User { name: v.clone() })
    })
}
