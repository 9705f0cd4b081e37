//! Plain rows the components hand to the state writer with a batch: the tracker's behaviour
//! records and day counts, the anomaly learner's sample, the Sigma correlation windows. They live here, below the components,
//! so the writer needs nothing from the components that produce them.

// The tracker builds these with the fast hasher it uses everywhere.
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

const DAY_MS: i64 = 86_400_000;

/// One thing an entity did at one time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BehaviourRecord {
    /// Event time, milliseconds since the epoch.
    pub ts: i64,
    /// The host (the user for logins).
    pub entity: String,
    /// `spawn`, `connect`, `resolve` or `login`.
    pub kind: &'static str,
    /// `parent>child`, `address|port`, the registered domain, or `host|source address`.
    pub subject: String,
}

/// Records per entity, per (kind, day): what a batch adds to `behaviour_days`.
pub type DayCounts = HashMap<String, HashMap<(&'static str, i64), u64>>;

/// One change to the stored sample, written in the transaction of the batch that caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRow {
    pub engine: Arc<str>,
    /// `kind|host|hour`.
    pub bucket: String,
    pub slot: u32,
    /// Events the bucket had seen when the row was written.
    pub seen: u64,
    pub ts: i64,
    /// The event as a JSON line; `None` deletes the slot.
    pub event: Option<String>,
}

/// How far one engine's learning has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Events offered to the sample.
    pub events: u64,
    pub first_ts: i64,
    pub newest_ts: i64,
}

impl Progress {
    /// Whole days between the first and newest event times.
    pub fn days(&self) -> u64 {
        if self.events == 0 {
            return 0;
        }
        u64::try_from((self.newest_ts - self.first_ts).div_euclid(DAY_MS)).unwrap_or(0)
    }
}

/// What the sample changed beyond its rows: the engine's progress and how far rows were pruned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleState {
    pub engine: Option<Arc<str>>,
    pub progress: Option<Progress>,
    /// Rows of this engine older than this event time go.
    pub prune_before: Option<i64>,
}

impl SampleState {
    pub fn is_empty(&self) -> bool {
        self.progress.is_none() && self.prune_before.is_none()
    }

    pub fn absorb(&mut self, later: SampleState) {
        self.engine = later.engine.or(self.engine.take());
        self.progress = later.progress.or(self.progress);
        self.prune_before = later.prune_before.max(self.prune_before);
    }
}

/// A change to one stored window: its new state, or `None` when it is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRow {
    pub correlation: String,
    /// What the correlation counted (`sigma::correlation::Correlation::fingerprint`).
    pub fingerprint: String,
    /// The group-by values, as a JSON array of text.
    pub key: String,
    /// The window as JSON; `None` deletes the stored row.
    pub state: Option<String>,
}
