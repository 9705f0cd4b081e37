//! Learning this deployment's normal inside the running engine (`docs/anomaly.md#learning`).
//!
//! ```text
//! event (no rule, intel or model flag) ──► Sampler (reservoir per kind, host, hour of day)
//!        ──► sample rows in the batch ──► state database (one transaction with the batch)
//! every check: minimums met, or retrain due ──► sample from the database ──► train (blocking
//!        task) ──► measured on held-out events ──► model file + models table + audit
//!        ──► active: swapped in between batches │ held for `palisade model accept`: a first
//!        model above the calibration bound, or a retrain whose recent alert rate drifted
//! ```
//!
//! The sample is bounded (`max_sample`) and spread evenly: each (event kind, host, hour of day)
//! bucket keeps a reservoir of at most `per_bucket` rows (and at most its even share of the
//! bound), and when the bound is reached a bucket with fewer rows than its share takes a row
//! from the largest bucket, so one chatty host cannot crowd out the rest. A full reservoir
//! replaces a row with probability share / events seen, so writes become rare.
//! Rows are event-time stamped; those older than the window are dropped as event time moves on,
//! so each retrain fits the recent weeks.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sqlx::SqlitePool;

use super::Model;
use crate::event::{Event, EventKind};

const DAY_MS: i64 = 86_400_000;
/// Buckets per host: every event kind times every hour of the day.
const PER_HOST: usize = EventKind::ALL.len() * 24;
const NO_BUCKET: u32 = u32::MAX;
/// Every n-th sample event (in event-time order) is kept out of the fit to measure the model.
const HOLD_OUT_EVERY: usize = 10;
/// The calibration's target alert rate at 0.9: below it, a rate is noise, not drift.
const TARGET_RATE: f64 = 0.001;
/// How long a training may hold the lock before another engine may take it.
const LOCK_MS: i64 = 30 * 60 * 1000;
/// Rows a full sample's replacements write per second of wall time at most (and the burst).
/// A full reservoir replaces with probability share / events seen, which in event time comes to
/// about `max_sample` / days learned rows a day (some 14,000 a day a week in: one row every six
/// seconds), however busy the fleet. A replay or a flood compresses days of events into
/// seconds, and then each replacement, a row of its own on random pages of the sample's
/// indexes, made the batch transactions several times larger and pushed every commit's
/// latency up. Past this budget a replacement is skipped (the event is not kept, as if the
/// draw had said no); filling the sample and giving a quiet bucket a row are never skipped,
/// and the window's pruning frees slots that are filled from the newest events.
const REPLACEMENTS_PER_SECOND: f64 = 20.0;

// The sample's rows are written by the state writer; they live with it.
pub use crate::state::rows::{Progress, SampleRow, SampleState};

/// The learning settings, from a config that has been read (its durations are typed).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Whose rows these are in a state database engines may share.
    pub engine: String,
    pub min_events: u64,
    pub min_days: u32,
    pub max_sample: usize,
    pub per_bucket: usize,
    pub window_days: u32,
    pub retrain_every: Duration,
    pub check_every: Duration,
    pub drift_factor: f64,
    /// A model with nothing in use to compare with is held above this held-out alert rate.
    pub max_held_out_rate: f64,
    pub threshold: f64,
    /// Where the model in use is written (absolute).
    pub model_file: PathBuf,
}

impl Settings {
    pub fn from_config(
        config: &crate::anomaly::AnomalyConfig,
        engine: String,
        model_file: PathBuf,
    ) -> Settings {
        let learning = &config.learning;
        Settings {
            engine,
            min_events: learning.min_events,
            min_days: learning.min_days,
            max_sample: learning.max_sample.max(1),
            per_bucket: learning.per_bucket.max(1),
            window_days: learning.window_days.max(1),
            retrain_every: learning.retrain_every.duration(),
            check_every: learning.check_every.duration(),
            drift_factor: learning.drift_factor,
            max_held_out_rate: learning.max_held_out_rate,
            threshold: config.threshold,
            model_file,
        }
    }

    fn window_ms(&self) -> i64 {
        i64::from(self.window_days) * DAY_MS
    }

    pub fn minimums_met(&self, progress: &Progress) -> bool {
        progress.events >= self.min_events && progress.days() >= u64::from(self.min_days)
    }
}

#[derive(Debug)]
struct Bucket {
    key: String,
    /// (slot, event time) of each stored row.
    slots: Vec<(u32, i64)>,
    next: u32,
    seen: u64,
}

/// The in-memory side of one engine's reservoirs; what it changes goes to the database with the
/// batch.
#[derive(Debug)]
pub struct Sampler {
    engine: Arc<str>,
    max_sample: usize,
    per_bucket: usize,
    window_ms: i64,
    buckets: Vec<Bucket>,
    by_host: HashMap<String, Vec<u32>>,
    /// (rows, bucket) of every bucket with rows: the largest gives one up when the bound is hit.
    by_size: BTreeSet<(usize, u32)>,
    stored: usize,
    progress: Progress,
    progress_changed: bool,
    /// Rows before this event time are gone.
    horizon: i64,
    prune: Option<i64>,
    rng: u64,
    replacements: WriteBudget,
}

/// A token bucket over wall time for a full sample's replacement rows.
#[derive(Debug)]
struct WriteBudget {
    tokens: f64,
    at: Option<std::time::Instant>,
}

impl WriteBudget {
    fn new() -> WriteBudget {
        WriteBudget {
            tokens: REPLACEMENTS_PER_SECOND,
            at: None,
        }
    }

    /// Takes one row's worth, when there is one.
    fn take(&mut self, now: std::time::Instant) -> bool {
        if let Some(at) = self.at {
            let earned = now.saturating_duration_since(at).as_secs_f64() * REPLACEMENTS_PER_SECOND;
            self.tokens = (self.tokens + earned).min(REPLACEMENTS_PER_SECOND);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A stored row as the sampler needs it back after a restart.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredSlot {
    pub bucket: String,
    pub slot: i64,
    pub seen: i64,
    pub ts: i64,
}

impl Sampler {
    pub fn new(settings: &Settings) -> Sampler {
        Sampler {
            engine: Arc::from(settings.engine.as_str()),
            max_sample: settings.max_sample,
            per_bucket: settings.per_bucket,
            window_ms: settings.window_ms(),
            buckets: Vec::new(),
            by_host: HashMap::new(),
            by_size: BTreeSet::new(),
            stored: 0,
            progress: Progress::default(),
            progress_changed: false,
            horizon: i64::MIN,
            prune: None,
            // Seeded per process: which events a reservoir keeps need not repeat across runs.
            rng: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
                | 1,
            replacements: WriteBudget::new(),
        }
    }

    /// The reservoirs as stored: this engine's rows and progress.
    pub fn restore(&mut self, rows: &[StoredSlot], progress: Option<Progress>) {
        for row in rows {
            let Some((kind, host, hour)) = split_bucket(&row.bucket) else {
                continue;
            };
            let Some(id) = self.bucket_id(kind, host, hour) else {
                continue;
            };
            let slot = u32::try_from(row.slot).unwrap_or(0);
            self.resize(id, |bucket| {
                bucket.slots.push((slot, row.ts));
                bucket.next = bucket.next.max(slot.saturating_add(1));
                bucket.seen = bucket.seen.max(u64::try_from(row.seen).unwrap_or(0));
            });
            self.stored += 1;
        }
        if let Some(progress) = progress {
            self.progress = progress;
        }
    }

    pub fn stored(&self) -> usize {
        self.stored
    }

    pub fn progress(&self) -> Progress {
        self.progress
    }

    fn random(&mut self, below: u64) -> u64 {
        // splitmix64: enough for choosing reservoir slots, and no dependency.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % below.max(1)
    }

    /// The bucket of (kind, host, hour), made when new; `None` once there are as many buckets
    /// as the sample has rows (a flood of made-up host names cannot grow memory without bound).
    fn bucket_id(&mut self, kind: EventKind, host: &str, hour: usize) -> Option<u32> {
        let index = kind.index() * 24 + hour.min(23);
        if let Some(ids) = self.by_host.get(host)
            && ids[index] != NO_BUCKET
        {
            return Some(ids[index]);
        }
        if self.buckets.len() >= self.max_sample {
            return None;
        }
        let id = u32::try_from(self.buckets.len()).ok()?;
        self.buckets.push(Bucket {
            key: format!("{}|{host}|{hour}", kind.as_str()),
            slots: Vec::new(),
            next: 0,
            seen: 0,
        });
        self.by_host
            .entry(host.to_string())
            .or_insert_with(|| vec![NO_BUCKET; PER_HOST])[index] = id;
        Some(id)
    }

    /// Changes a bucket, keeping the size index right.
    fn resize(&mut self, id: u32, change: impl FnOnce(&mut Bucket)) {
        let Some(bucket) = self.buckets.get_mut(id as usize) else {
            return;
        };
        let before = bucket.slots.len();
        change(bucket);
        let after = bucket.slots.len();
        if before != after {
            self.by_size.remove(&(before, id));
            if after > 0 {
                self.by_size.insert((after, id));
            }
        }
    }

    /// Offers an event that nothing flagged; the rows to write are appended to `out`.
    pub fn observe(&mut self, event: &Event, out: &mut Vec<SampleRow>) {
        self.observe_at(event, out, std::time::Instant::now);
    }

    /// [`Sampler::observe`] with the wall clock given (read only when a full reservoir would
    /// replace a row, a few events in a hundred).
    fn observe_at(
        &mut self,
        event: &Event,
        out: &mut Vec<SampleRow>,
        now: impl FnOnce() -> std::time::Instant,
    ) {
        let ts = event.timestamp_ms;
        // Event time is the sensor's word (the intake has clamped the future): an event older
        // than the window is no sample candidate and does not count, so one stray old event
        // cannot make the days minimum look met.
        if self.progress.events > 0 && ts < self.progress.newest_ts - self.window_ms {
            return;
        }
        if self.progress.events == 0 {
            self.progress.first_ts = ts;
            self.progress.newest_ts = ts;
        }
        self.progress.events += 1;
        self.progress.first_ts = self.progress.first_ts.min(ts);
        self.progress.newest_ts = self.progress.newest_ts.max(ts);
        self.progress.first_ts = self
            .progress
            .first_ts
            .max(self.progress.newest_ts - self.window_ms);
        self.progress_changed = true;
        self.slide();
        if ts < self.horizon {
            return;
        }
        let hour = usize::try_from(ts.rem_euclid(DAY_MS) / 3_600_000).unwrap_or(0);
        let Some(id) = self.bucket_id(event.kind, event.host.as_deref().unwrap_or(""), hour) else {
            return;
        };
        // A bucket's share: the bound spread evenly over the buckets, at most `per_bucket`.
        let share = (self.max_sample / self.buckets.len().max(1)).clamp(1, self.per_bucket);
        let (len, seen) = match self.buckets.get_mut(id as usize) {
            Some(bucket) => {
                bucket.seen += 1;
                (bucket.slots.len(), bucket.seen)
            }
            None => return,
        };
        if len < share {
            if self.stored >= self.max_sample {
                // Full: a larger bucket gives up its newest row to this under-filled one.
                match self.by_size.last() {
                    Some(&(size, largest)) if largest != id && size > len + 1 => {
                        self.evict(largest, out);
                    }
                    _ => return,
                }
            }
            self.append(id, event, out);
        } else {
            // Reservoir sampling: the n-th event of a full bucket replaces a random row with
            // probability share / n, so the bucket stays a uniform sample of what it saw (and
            // writes become rare as it sees more), within the write budget.
            let pick = self.random(seen);
            if let Ok(j) = usize::try_from(pick)
                && j < len
                && self.replacements.take(now())
                && let Some(bucket) = self.buckets.get_mut(id as usize)
            {
                bucket.slots[j].1 = ts;
                let slot = bucket.slots[j].0;
                out.push(self.row(id, slot, ts, Some(sample_line(event))));
            }
        }
    }

    fn row(&self, id: u32, slot: u32, ts: i64, event: Option<String>) -> SampleRow {
        let bucket = &self.buckets[id as usize];
        SampleRow {
            engine: self.engine.clone(),
            bucket: bucket.key.clone(),
            slot,
            seen: bucket.seen,
            ts,
            event,
        }
    }

    fn append(&mut self, id: u32, event: &Event, out: &mut Vec<SampleRow>) {
        let ts = event.timestamp_ms;
        let mut slot = 0;
        self.resize(id, |bucket| {
            slot = bucket.next;
            bucket.next += 1;
            bucket.slots.push((slot, ts));
        });
        self.stored += 1;
        out.push(self.row(id, slot, ts, Some(sample_line(event))));
    }

    fn evict(&mut self, id: u32, out: &mut Vec<SampleRow>) {
        let mut gone = None;
        self.resize(id, |bucket| gone = bucket.slots.pop());
        if let Some((slot, ts)) = gone {
            self.stored -= 1;
            out.push(self.row(id, slot, ts, None));
        }
    }

    /// Drops rows older than the window once event time has moved a day past the last drop.
    fn slide(&mut self) {
        let horizon = self.progress.newest_ts - self.window_ms;
        if horizon < self.horizon.saturating_add(DAY_MS) {
            return;
        }
        self.horizon = horizon;
        let ids: Vec<u32> = self.by_size.iter().map(|(_, id)| *id).collect();
        for id in ids {
            let mut dropped = 0;
            self.resize(id, |bucket| {
                let before = bucket.slots.len();
                bucket.slots.retain(|(_, ts)| *ts >= horizon);
                dropped = before - bucket.slots.len();
                if before > 0 {
                    // The reservoir's count shrinks with what it kept.
                    bucket.seen = bucket.seen * bucket.slots.len() as u64 / before as u64;
                }
            });
            self.stored -= dropped;
        }
        self.prune = Some(horizon);
    }

    /// The progress and pruning since the last call, for the batch.
    pub fn take_state(&mut self) -> SampleState {
        let progress = std::mem::take(&mut self.progress_changed).then_some(self.progress);
        SampleState {
            engine: Some(self.engine.clone()),
            progress,
            prune_before: self.prune.take(),
        }
    }
}

fn split_bucket(key: &str) -> Option<(EventKind, &str, usize)> {
    let (kind, rest) = key.split_once('|')?;
    let (host, hour) = rest.rsplit_once('|')?;
    Some((EventKind::parse(kind)?, host, hour.parse().ok()?))
}

/// An event as a flat JSON line that `normalize` reads back to the same event: the time as
/// RFC 3339 and unknown fields at the top level, as they arrived.
pub fn sample_line(event: &Event) -> String {
    let mut value = serde_json::to_value(event).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.remove("timestamp_ms");
        map.insert(
            "timestamp".into(),
            serde_json::Value::String(event.timestamp_rfc3339()),
        );
        if let Some(serde_json::Value::Object(extra)) = map.remove("extra") {
            for (key, field) in extra {
                map.entry(key).or_insert(field);
            }
        }
    }
    value.to_string()
}

/// Where the engine is: learning, or scoring with a model it trained (or was given).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Status {
    /// `learning`, `training` or `scoring`.
    pub state: &'static str,
    pub events: u64,
    pub min_events: u64,
    pub days: u64,
    pub min_days: u32,
    /// Rows in the sample (every engine sharing the state database).
    pub sample: u64,
    /// The model in use: its row in the models table and when it was trained.
    pub model_id: Option<i64>,
    pub trained_at: Option<String>,
    /// A retrain held for `palisade model accept`.
    pub held: Option<HeldModel>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldModel {
    pub id: i64,
    pub trained_at: String,
    /// Its alert rate on the sample's held-out events (what holds a model with nothing in use
    /// to compare with).
    pub held_out_rate: f64,
    /// Its alert rate on the newest day's held-out events, and the model in use's.
    pub recent_rate: f64,
    pub previous_rate: Option<f64>,
}

impl Status {
    /// One line for a person: `learning: 41,000 of 50,000 events, 3 of 7 days`.
    pub fn line(&self) -> String {
        let mut line = match self.state {
            "scoring" => format!(
                "scoring with the model trained at {} (model {}); sample of {} events",
                self.trained_at.as_deref().unwrap_or("?"),
                self.model_id.unwrap_or(0),
                thousands(self.sample)
            ),
            state => format!(
                "{state}: {} of {} events, {} of {} days",
                thousands(self.events),
                thousands(self.min_events),
                self.days.min(u64::from(self.min_days)),
                self.min_days
            ),
        };
        match &self.held {
            Some(held) if held.previous_rate.is_none() => line.push_str(&format!(
                "\nheld for review: model {} trained at {} flags {:.2}% of the sample's held-out normal events, above the calibration bound; accept it with `palisade model accept`",
                held.id,
                held.trained_at,
                held.held_out_rate * 100.0,
            )),
            Some(held) => line.push_str(&format!(
                "\nheld for review: model {} trained at {} flags {:.2}% of the newest day's normal events (the model in use: {}); accept it with `palisade model accept`",
                held.id,
                held.trained_at,
                held.recent_rate * 100.0,
                held.previous_rate
                    .map_or_else(|| "none".to_string(), |r| format!("{:.2}%", r * 100.0)),
            )),
            None => {}
        }
        if let Some(error) = &self.last_error {
            line.push_str(&format!("\nlast training failed: {error}"));
        }
        line
    }
}

/// `41000` as `41,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The learner the pipeline and the engine share: the sampler, what the background task found,
/// and a trained model waiting to be swapped in between batches.
#[derive(Clone)]
pub struct Learner {
    shared: Arc<Shared>,
}

struct Shared {
    settings: Settings,
    sampler: Mutex<Sampler>,
    status: Mutex<Status>,
    pending: Mutex<Option<Model>>,
    /// When the last training failed.
    failed_at: Mutex<Option<std::time::Instant>>,
}

impl Learner {
    pub fn new(settings: Settings, sampler: Sampler) -> Learner {
        let status = Status {
            state: "learning",
            min_events: settings.min_events,
            min_days: settings.min_days,
            ..Status::default()
        };
        Learner {
            shared: Arc::new(Shared {
                settings,
                sampler: Mutex::new(sampler),
                status: Mutex::new(status),
                pending: Mutex::new(None),
                failed_at: Mutex::new(None),
            }),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// Offers an event nothing flagged to the sample.
    pub fn observe(&self, event: &Event, out: &mut Vec<SampleRow>) {
        if let Ok(mut sampler) = self.shared.sampler.lock() {
            sampler.observe(event, out);
        }
    }

    pub fn take_state(&self) -> SampleState {
        self.shared
            .sampler
            .lock()
            .map(|mut s| s.take_state())
            .unwrap_or_default()
    }

    /// A model trained (or accepted) since the last call, to swap in between batches.
    pub fn take_pending(&self) -> Option<Model> {
        self.shared.pending.lock().ok().and_then(|mut p| p.take())
    }

    fn set_pending(&self, model: Model) {
        if let Ok(mut pending) = self.shared.pending.lock() {
            *pending = Some(model);
        }
    }

    pub fn status(&self) -> Status {
        self.shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Shows a failed check in the status (`/healthz`, `model status`) until the next one.
    pub fn set_last_error(&self, err: String) {
        self.update(|s| s.last_error = Some(err));
    }

    fn update(&self, change: impl FnOnce(&mut Status)) {
        if let Ok(mut status) = self.shared.status.lock() {
            change(&mut status);
        }
    }
}

/// Reads this engine's stored reservoirs and progress back (at start).
pub async fn restore(pool: &SqlitePool, sampler: &mut Sampler) -> Result<usize, sqlx::Error> {
    let engine = sampler.engine.to_string();
    let rows: Vec<StoredSlot> =
        sqlx::query_as("SELECT bucket, slot, seen, ts FROM anomaly_sample WHERE engine = ?")
            .bind(&engine)
            .fetch_all(pool)
            .await?;
    let progress: Option<(i64, i64, i64)> =
        sqlx::query_as("SELECT events, first_ts, newest_ts FROM anomaly_progress WHERE engine = ?")
            .bind(&engine)
            .fetch_optional(pool)
            .await?;
    sampler.restore(
        &rows,
        progress.map(|(events, first_ts, newest_ts)| Progress {
            events: u64::try_from(events).unwrap_or(0),
            first_ts,
            newest_ts,
        }),
    );
    Ok(rows.len())
}

/// Learning progress over every engine sharing the database, and the sample's size.
pub async fn group_progress(pool: &SqlitePool) -> Result<(Progress, u64), sqlx::Error> {
    let (events, first, newest): (Option<i64>, Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT SUM(events), MIN(first_ts), MAX(newest_ts) FROM anomaly_progress")
            .fetch_one(pool)
            .await?;
    let sample: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM anomaly_sample")
        .fetch_one(pool)
        .await?;
    Ok((
        Progress {
            events: u64::try_from(events.unwrap_or(0)).unwrap_or(0),
            first_ts: first.unwrap_or(0),
            newest_ts: newest.unwrap_or(0),
        },
        u64::try_from(sample).unwrap_or(0),
    ))
}

/// A row of the models table, without the model text.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ModelRow {
    pub id: i64,
    pub trained_at: String,
    pub trained_by: String,
    pub status: String,
    pub sample_events: i64,
    pub held_out_rate: f64,
    pub recent_rate: f64,
    pub previous_rate: Option<f64>,
    pub accepted_by: Option<String>,
}

/// The newest row of a status (`active` or `held`).
pub async fn newest_model(
    pool: &SqlitePool,
    status: &str,
) -> Result<Option<ModelRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, trained_at, trained_by, status, sample_events, held_out_rate, recent_rate, previous_rate, accepted_by FROM anomaly_models WHERE status = ? ORDER BY id DESC LIMIT 1",
    )
    .bind(status)
    .fetch_optional(pool)
    .await
}

async fn model_text(pool: &SqlitePool, id: i64) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT model FROM anomaly_models WHERE id = ?")
        .bind(id)
        .fetch_one(pool)
        .await
}

/// The newest active model that this build can read. A stored model it cannot read (written
/// by a build with another model format) is marked `unreadable`, logged, and the next one is
/// tried: the engine starts and learns again rather than refusing to run.
async fn readable_active(pool: &SqlitePool) -> Result<Option<(ModelRow, Model)>, String> {
    while let Some(row) = newest_model(pool, "active")
        .await
        .map_err(|e| e.to_string())?
    {
        let text = model_text(pool, row.id).await.map_err(|e| e.to_string())?;
        match Model::from_text(&text) {
            Ok(model) => return Ok(Some((row, model))),
            Err((_, err)) => {
                tracing::error!(
                    model = row.id,
                    "the stored anomaly model cannot be used ({err}); set aside, a new one is trained from the sample"
                );
                sqlx::query("UPDATE anomaly_models SET status = 'unreadable' WHERE id = ?")
                    .bind(row.id)
                    .execute(pool)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(None)
}

/// What an operator's `palisade model accept` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    Model(ModelRow),
    NothingHeld,
}

/// Makes the newest held model the one in use (engines pick it up at their next check).
pub async fn accept(pool: &SqlitePool, operator: &str) -> Result<Accepted, sqlx::Error> {
    let Some(held) = newest_model(pool, "held").await? else {
        return Ok(Accepted::NothingHeld);
    };
    sqlx::query("UPDATE anomaly_models SET status = 'active', accepted_by = ? WHERE id = ? AND status = 'held'")
        .bind(operator)
        .bind(held.id)
        .execute(pool)
        .await?;
    Ok(Accepted::Model(ModelRow {
        status: "active".into(),
        accepted_by: Some(operator.to_string()),
        ..held
    }))
}

/// The status as stored, for `palisade model status` (no engine needed).
pub async fn stored_status(
    pool: &SqlitePool,
    config: &crate::anomaly::AnomalyConfig,
) -> Result<Status, sqlx::Error> {
    let (progress, sample) = group_progress(pool).await?;
    let active = newest_model(pool, "active").await?;
    let held = newest_model(pool, "held").await?;
    Ok(Status {
        state: if active.is_some() {
            "scoring"
        } else {
            "learning"
        },
        events: progress.events,
        min_events: config.learning.min_events,
        days: progress.days(),
        min_days: config.learning.min_days,
        sample,
        model_id: active.as_ref().map(|m| m.id),
        trained_at: active.map(|m| m.trained_at),
        held: held_of(held, None),
        last_error: None,
    })
}

fn held_of(held: Option<ModelRow>, active: Option<i64>) -> Option<HeldModel> {
    held.filter(|h| active.is_none_or(|a| h.id > a))
        .map(|h| HeldModel {
            id: h.id,
            trained_at: h.trained_at,
            held_out_rate: h.held_out_rate,
            recent_rate: h.recent_rate,
            previous_rate: h.previous_rate,
        })
}

/// A model fitted from the sample and measured on its held-out part.
#[derive(Debug)]
pub struct Trained {
    pub model: Model,
    pub sample_events: usize,
    /// Share of held-out events at or above the threshold, and how many were measured.
    pub held_out_rate: f64,
    pub held_out_events: usize,
    /// The same on the held-out events of the newest day, and the model in use's there.
    pub recent_rate: f64,
    pub previous_rate: Option<f64>,
    pub recent_events: usize,
}

/// Why a trained model is kept out of use until a person accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Nothing is in use to compare it with, and it flags more of the sample's held-out normal
    /// events than the calibration bound (`max_held_out_rate`).
    Uncalibrated,
    /// It flags the newest day's normal events far more often than the model in use.
    Drifted,
}

impl Hold {
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::Uncalibrated => "calibration",
            Hold::Drifted => "drift",
        }
    }
}

impl Trained {
    /// Whether the model is held, and why: a model with nothing in use to compare with is
    /// judged on the sample's held-out events against the calibration bound, a retrain on the
    /// newest day against the model in use. A rate under one event of the measured set counts
    /// as that floor: one event is noise.
    pub fn hold(&self, settings: &Settings) -> Option<Hold> {
        if self.previous_rate.is_none() {
            let floor = settings
                .max_held_out_rate
                .max(1.0 / self.held_out_events.max(1) as f64);
            return (self.held_out_rate > floor).then_some(Hold::Uncalibrated);
        }
        self.drifted(settings.drift_factor).then_some(Hold::Drifted)
    }

    /// Whether the new model flags the newest normal events far more often than the one in use
    /// (a first model has nothing to drift from). Rates under the calibration target, or under
    /// one event of the measured set, count as that floor: they are noise.
    pub fn drifted(&self, factor: f64) -> bool {
        let Some(previous) = self.previous_rate else {
            return false;
        };
        let floor = previous
            .max(TARGET_RATE)
            .max(1.0 / self.recent_events.max(1) as f64);
        self.recent_rate > factor * floor
    }
}

/// Share of `events` (of a kind the model scores) at or above `threshold`.
pub fn alert_rate(model: &Model, events: &[&Event], threshold: f64) -> f64 {
    let mut scratch = Vec::new();
    let (mut scored, mut flagged) = (0usize, 0usize);
    for event in events {
        if let Some(score) = model.score_only(event, &mut scratch) {
            scored += 1;
            flagged += usize::from(score >= threshold);
        }
    }
    flagged as f64 / scored.max(1) as f64
}

/// Fits a model to the sample with the same code as `palisade train`, holding out every tenth
/// event (in time order) to measure it, and measures `current` on the newest day's held-out
/// events beside it.
pub fn fit(
    mut events: Vec<Event>,
    threshold: f64,
    current: Option<&Model>,
    label: &str,
) -> Result<Trained, super::train::TrainError> {
    events.sort_by_key(|e| e.timestamp_ms);
    let newest = events.last().map_or(0, |e| e.timestamp_ms);
    let mut fitted = Vec::with_capacity(events.len());
    let mut held = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        if (i + 1).is_multiple_of(HOLD_OUT_EVERY) {
            held.push(event);
        } else {
            fitted.push(event);
        }
    }
    let model = super::train::train(&fitted, label)?;
    let held_refs: Vec<&Event> = held.iter().collect();
    let recent: Vec<&Event> = held
        .iter()
        .filter(|e| e.timestamp_ms > newest - DAY_MS)
        .collect();
    Ok(Trained {
        held_out_rate: alert_rate(&model, &held_refs, threshold),
        held_out_events: held_refs.len(),
        recent_rate: alert_rate(&model, &recent, threshold),
        previous_rate: current.map(|m| alert_rate(m, &recent, threshold)),
        recent_events: recent.len(),
        sample_events: fitted.len() + held.len(),
        model,
    })
}

/// The learner at start: this engine's reservoirs and progress restored, and the model in use
/// (the newest active one in the database) put in `anomaly` before the first event. Returns
/// the learner, how many sample rows were restored and the model's id.
pub async fn prepare(
    pool: &SqlitePool,
    settings: Settings,
    anomaly: &super::AnomalyHandle,
) -> Result<(Learner, usize, Option<i64>), String> {
    let mut sampler = Sampler::new(&settings);
    let restored = restore(pool, &mut sampler)
        .await
        .map_err(|e| e.to_string())?;
    let learner = Learner::new(settings, sampler);
    let mut in_use = None;
    if let Some((row, model)) = readable_active(pool).await? {
        anomaly.swap(model);
        in_use = Some(row.id);
    }
    refresh_status(&learner, pool).await?;
    Ok((learner, restored, in_use))
}

/// Reads the group's progress and the newest active and held models into the learner's status
/// (what `/healthz`, `/metrics` and `model status` show), and returns them.
async fn refresh_status(
    learner: &Learner,
    pool: &SqlitePool,
) -> Result<(Progress, Option<ModelRow>, Option<ModelRow>), String> {
    let (progress, sample) = group_progress(pool).await.map_err(|e| e.to_string())?;
    let active = newest_model(pool, "active")
        .await
        .map_err(|e| e.to_string())?;
    let held = newest_model(pool, "held")
        .await
        .map_err(|e| e.to_string())?;
    learner.update(|s| {
        s.events = progress.events;
        s.days = progress.days();
        s.sample = sample;
        s.model_id = active.as_ref().map(|m| m.id);
        s.trained_at = active.as_ref().map(|m| m.trained_at.clone());
        s.state = if active.is_some() {
            "scoring"
        } else {
            "learning"
        };
        s.held = held_of(held.clone(), active.as_ref().map(|m| m.id));
    });
    Ok((progress, active, held))
}

/// One check of the learner's background task (which the engine runs, as it reports to the
/// metrics): adopts a newer model, refreshes the status, and trains when due.
pub async fn check(
    learner: &Learner,
    anomaly: &super::AnomalyHandle,
    pool: &SqlitePool,
    audit: Option<&crate::audit::AuditLog>,
    in_use: &mut Option<i64>,
) -> Result<(), String> {
    let settings = learner.settings().clone();
    let active = newest_model(pool, "active")
        .await
        .map_err(|e| e.to_string())?;
    // A model newer than the one in use: trained by this or another engine, or accepted.
    if let Some(row) = &active
        && *in_use != Some(row.id)
        && let Some((row, model)) = readable_active(pool).await?
        && *in_use != Some(row.id)
    {
        if let Err(err) = model.save(&settings.model_file) {
            tracing::error!("{err}");
        }
        learner.set_pending(model);
        *in_use = Some(row.id);
        tracing::info!(
            model = row.id,
            trained_at = row.trained_at,
            "anomaly model adopted; scoring from the next batch"
        );
    }
    // Read after adopting: an unreadable model was set aside above.
    let (progress, active, held) = refresh_status(learner, pool).await?;
    if !settings.minimums_met(&progress) {
        return Ok(());
    }
    let newest_trained = [&active, &held]
        .into_iter()
        .flatten()
        .filter_map(|m| m.trained_at.parse::<jiff::Timestamp>().ok())
        .max();
    let due = match newest_trained {
        None => true,
        Some(at) => {
            let since = jiff::Timestamp::now().duration_since(at);
            since.as_secs() >= 0 && since.unsigned_abs() >= settings.retrain_every
        }
    };
    // A training that failed (too few events of every kind, say) is not retried at every
    // check: ten checks later.
    let failed_recently = learner
        .shared
        .failed_at
        .lock()
        .ok()
        .and_then(|f| *f)
        .is_some_and(|at| at.elapsed() < settings.check_every * 10);
    if !due
        || failed_recently
        || !lock(pool, &settings.engine)
            .await
            .map_err(|e| e.to_string())?
    {
        return Ok(());
    }
    if active.is_none() {
        learner.update(|s| s.state = "training");
    }
    // The lock is held until the model is stored: another engine checking in between would
    // otherwise find neither the lock nor the model, and train a second one.
    let stored = train_and_store(learner, anomaly, pool, audit, in_use, &settings, progress).await;
    let unlocked = unlock(pool, &settings.engine).await;
    if let Ok(mut failed) = learner.shared.failed_at.lock() {
        *failed = stored.is_err().then(std::time::Instant::now);
    }
    stored?;
    unlocked.map_err(|e| e.to_string())
}

/// Fits, measures, stores, writes, audits and (unless held) hands over a model.
async fn train_and_store(
    learner: &Learner,
    anomaly: &super::AnomalyHandle,
    pool: &SqlitePool,
    audit: Option<&crate::audit::AuditLog>,
    in_use: &mut Option<i64>,
    settings: &Settings,
    progress: Progress,
) -> Result<(), String> {
    let trained = train_from_sample(pool, anomaly, settings, progress).await;
    if trained.is_err() && in_use.is_none() {
        learner.update(|s| s.state = "learning");
    }
    let (trained, sample_events) = trained?;
    let hold = trained.hold(settings);
    let held = hold.is_some();
    let status = if held { "held" } else { "active" };
    let text = serde_json::to_string(&trained.model).map_err(|e| e.to_string())?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO anomaly_models (trained_at, trained_by, status, sample_events, held_out_rate, recent_rate, previous_rate, model) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&trained.model.trained_at)
    .bind(&settings.engine)
    .bind(status)
    .bind(i64::try_from(sample_events).unwrap_or(i64::MAX))
    .bind(trained.held_out_rate)
    .bind(trained.recent_rate)
    .bind(trained.previous_rate)
    .bind(&text)
    .fetch_one(pool)
    .await
    .map_err(|e| e.to_string())?;
    // An older held model is replaced by this one's verdict.
    sqlx::query("UPDATE anomaly_models SET status = 'superseded' WHERE status = 'held' AND id < ?")
        .bind(id)
        .execute(pool)
        .await
        .map_err(|e| e.to_string())?;
    let file = if held {
        held_file(&settings.model_file)
    } else {
        settings.model_file.clone()
    };
    if let Err(err) = trained.model.save(&file) {
        tracing::error!("{err}");
    }
    let reason = format!(
        "anomaly model {id} trained on {sample_events} sample events: {:.3}% of held-out events at or above {}, {:.3}% of the newest day's{}",
        trained.held_out_rate * 100.0,
        settings.threshold,
        trained.recent_rate * 100.0,
        trained.previous_rate.map_or_else(String::new, |r| format!(
            " (the model in use: {:.3}%)",
            r * 100.0
        ))
    );
    if let Some(hold) = hold {
        let why = match hold {
            Hold::Drifted => format!(
                "its alert rate jumped past {}x the model in use's",
                settings.drift_factor
            ),
            Hold::Uncalibrated => format!(
                "with no model in use to compare with, its held-out alert rate is above the calibration bound of {:.3}%",
                settings.max_held_out_rate * 100.0
            ),
        };
        tracing::warn!(model = id, file = %file.display(), "{reason}; held: {why}; `palisade model accept` puts it in use");
    } else {
        tracing::info!(model = id, file = %file.display(), "{reason}; in use from the next batch");
    }
    if let Some(audit) = audit {
        let entry = crate::audit::AuditEntry {
            kind: "model".into(),
            actor: format!("engine:{}", settings.engine),
            status: Some(if held { "held" } else { "trained" }.into()),
            reason: Some(reason),
            details: serde_json::json!({
                "model": id,
                "file": file.display().to_string(),
                "sample_events": sample_events,
                "held_out_rate": trained.held_out_rate,
                "recent_rate": trained.recent_rate,
                "previous_rate": trained.previous_rate,
                "drift_factor": settings.drift_factor,
                "max_held_out_rate": settings.max_held_out_rate,
                "held_for": hold.map(Hold::as_str),
            }),
            ..crate::audit::AuditEntry::default()
        };
        if let Err(err) = audit.append(&[entry]).await {
            tracing::error!("cannot audit the trained model: {err}");
        }
    }
    if held {
        let scoring = in_use.is_some();
        learner.update(|s| {
            s.state = if scoring { "scoring" } else { "learning" };
            s.held = Some(HeldModel {
                id,
                trained_at: trained.model.trained_at.clone(),
                held_out_rate: trained.held_out_rate,
                recent_rate: trained.recent_rate,
                previous_rate: trained.previous_rate,
            });
        });
    } else {
        learner.update(|s| {
            s.state = "scoring";
            s.model_id = Some(id);
            s.trained_at = Some(trained.model.trained_at.clone());
            s.held = None;
            s.last_error = None;
        });
        learner.set_pending(trained.model);
        *in_use = Some(id);
    }
    Ok(())
}

/// `learned.model` → `learned.model.held`.
pub fn held_file(model_file: &std::path::Path) -> PathBuf {
    let mut name = model_file.as_os_str().to_owned();
    name.push(".held");
    PathBuf::from(name)
}

async fn train_from_sample(
    pool: &SqlitePool,
    anomaly: &super::AnomalyHandle,
    settings: &Settings,
    progress: Progress,
) -> Result<(Trained, usize), String> {
    let since = progress.newest_ts - settings.window_ms();
    let lines: Vec<String> =
        sqlx::query_scalar("SELECT event FROM anomaly_sample WHERE ts >= ? ORDER BY ts")
            .bind(since)
            .fetch_all(pool)
            .await
            .map_err(|e| e.to_string())?;
    let current = anomaly.current();
    let threshold = settings.threshold;
    let label = format!("the engine's sample ({} events)", lines.len());
    tokio::task::spawn_blocking(move || {
        let events: Vec<Event> = lines
            .iter()
            .filter_map(|line| crate::event::normalize(line.as_bytes()).ok())
            .collect();
        let count = events.len();
        fit(events, threshold, current.as_deref(), &label)
            .map(|t| (t, count))
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("the training task failed: {e}"))?
}

async fn lock(pool: &SqlitePool, holder: &str) -> Result<bool, sqlx::Error> {
    let now = jiff::Timestamp::now().as_millisecond();
    let taken = sqlx::query(
        "INSERT INTO anomaly_training_lock (id, holder, until_ms) VALUES (1, ?, ?)
         ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
         WHERE anomaly_training_lock.until_ms < ? OR anomaly_training_lock.holder = excluded.holder",
    )
    .bind(holder)
    .bind(now + LOCK_MS)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(taken.rows_affected() == 1)
}

async fn unlock(pool: &SqlitePool, holder: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM anomaly_training_lock WHERE holder = ?")
        .bind(holder)
        .execute(pool)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_sample: usize) -> Settings {
        Settings {
            engine: "test".into(),
            min_events: 10,
            min_days: 1,
            max_sample,
            per_bucket: 1_000,
            window_days: 7,
            retrain_every: Duration::from_secs(3600),
            check_every: Duration::from_secs(1),
            drift_factor: 3.0,
            max_held_out_rate: 0.002,
            threshold: 0.9,
            model_file: PathBuf::from("m.model"),
        }
    }

    fn login(host: &str, ts: i64) -> Event {
        let mut event = Event::new(format!("{host}-{ts}"), EventKind::Login, ts);
        event.host = Some(host.into());
        event.user = Some("alice".into());
        event
    }

    /// One chatty host cannot fill the sample: when the bound is reached, a quiet host's bucket
    /// still gets rows, taken from the largest bucket.
    #[test]
    fn the_sample_stays_bounded_and_a_chatty_host_does_not_crowd_out_a_quiet_one() {
        let mut sampler = Sampler::new(&settings(100));
        let mut rows = Vec::new();
        let t0 = 1_762_180_205_000;
        for i in 0..1_000 {
            sampler.observe(&login("busy", t0 + i), &mut rows);
        }
        for i in 0..20 {
            sampler.observe(&login("quiet", t0 + 2_000 + i), &mut rows);
        }
        assert_eq!(sampler.stored(), 100);
        let quiet = sampler
            .buckets
            .iter()
            .find(|b| b.key.contains("quiet"))
            .map_or(0, |b| b.slots.len());
        assert_eq!(quiet, 20);
        // The rows written replay to the same contents: a put per stored slot, a delete per
        // eviction.
        let mut stored = std::collections::HashMap::new();
        for row in &rows {
            match &row.event {
                Some(_) => stored.insert((row.bucket.clone(), row.slot), row.ts),
                None => stored.remove(&(row.bucket.clone(), row.slot)),
            };
        }
        assert_eq!(stored.len(), 100);
        assert_eq!(sampler.take_state().progress.map(|p| p.events), Some(1_020));
        // A full reservoir writes rarely: about share × ln(seen / share) replacements.
        assert!(rows.len() < 500, "{} rows written", rows.len());
    }

    /// The half-load latency regression: with the sample full, every event a reservoir chose
    /// to keep was a row written with its batch, and a replay (or the bench) at tens of
    /// thousands of events a second wrote well over a thousand rows a second into the batch
    /// transactions. Now a flood writes at most the budget of replacement rows a second, while
    /// the reservoirs keep counting, filling is not held back, and a quiet host still gets its
    /// rows.
    #[test]
    fn a_full_sample_writes_at_most_its_budget_of_replacement_rows_a_second() {
        let mut settings = settings(1_000);
        settings.per_bucket = 10;
        let mut sampler = Sampler::new(&settings);
        let mut rows = Vec::new();
        let t0 = 1_762_180_205_000;
        let start = std::time::Instant::now();
        let at = |seconds: u64| move || start + Duration::from_secs(seconds);
        // Filling is not held back by the budget: all ten rows at one instant.
        for i in 0..10 {
            sampler.observe_at(&login("busy", t0 + i), &mut rows, at(0));
        }
        assert_eq!(rows.len(), 10);
        rows.clear();
        // A flood within one second: a uniform reservoir would replace about
        // 10 × ln(100,000 / 10) ≈ 92 rows; the budget allows its one-second burst.
        for i in 0..100_000 {
            sampler.observe_at(&login("busy", t0 + 10 + i), &mut rows, at(0));
        }
        let replaced = rows.len();
        assert!(
            replaced > 0 && replaced as f64 <= REPLACEMENTS_PER_SECOND,
            "{replaced} rows in one second"
        );
        assert!(rows.iter().all(|r| r.event.is_some()));
        // The reservoir counted every event: the next replacements stay as rare as uniform
        // sampling makes them.
        assert_eq!(sampler.buckets[0].seen, 100_010);
        // Five seconds on, at most five seconds' worth (the burst caps what was saved up).
        rows.clear();
        for i in 0..1_000_000 {
            sampler.observe_at(&login("busy", t0 + 200_000 + i), &mut rows, at(5));
        }
        assert!(
            rows.len() as f64 <= REPLACEMENTS_PER_SECOND,
            "{} rows",
            rows.len()
        );
        // A quiet host's first events still get rows, whatever the budget.
        rows.clear();
        for i in 0..5 {
            sampler.observe_at(&login("quiet", t0 + 2_000_000 + i), &mut rows, at(5));
        }
        assert_eq!(
            rows.iter().filter(|r| r.bucket.contains("quiet")).count(),
            5
        );
    }

    /// A sample row reads back as the event it was made from, unknown fields included.
    #[test]
    fn a_sample_line_normalizes_back_to_its_event() {
        let raw = br#"{"type":"process_create","timestamp":"2025-11-03T14:30:05Z","host":"ws-1","pid":42,"name":"cmd.exe","parent_name":"explorer.exe","user":"bob","cmdline":"cmd /c dir","site":"lab"}"#;
        let event = crate::event::normalize(raw).unwrap();
        let again = crate::event::normalize(sample_line(&event).as_bytes()).unwrap();
        assert_eq!(again, event);
    }

    /// Made-up host names cannot grow the sampler past its bound, and an event dated long
    /// before the others does not make the days minimum look met.
    #[test]
    fn a_flood_of_hosts_and_a_stray_old_event_move_neither_memory_nor_the_days() {
        let mut sampler = Sampler::new(&settings(100));
        let mut rows = Vec::new();
        let t0 = 1_762_180_205_000;
        for i in 0..10_000 {
            sampler.observe(&login(&format!("h{i}"), t0 + i), &mut rows);
        }
        assert!(sampler.buckets.len() <= 100 && sampler.stored() <= 100);
        sampler.observe(&login("old", t0 - 365 * DAY_MS), &mut rows);
        assert_eq!(sampler.progress().days(), 0);
        assert_eq!(sampler.progress().first_ts, t0);
    }

    /// Rows older than the window go once event time moves on, and the batch says so.
    #[test]
    fn rows_older_than_the_window_are_pruned() {
        let mut sampler = Sampler::new(&settings(1_000));
        let mut rows = Vec::new();
        let t0 = 1_762_180_205_000;
        sampler.observe(&login("a", t0), &mut rows);
        let _ = sampler.take_state();
        sampler.observe(&login("a", t0 + 8 * DAY_MS), &mut rows);
        assert_eq!(sampler.stored(), 1);
        assert_eq!(
            sampler.take_state().prune_before,
            Some(t0 + 8 * DAY_MS - 7 * DAY_MS)
        );
    }

    #[test]
    fn progress_reads_as_people_write_it() {
        let status = Status {
            state: "learning",
            events: 41_000,
            min_events: 50_000,
            days: 3,
            min_days: 7,
            ..Status::default()
        };
        assert_eq!(
            status.line(),
            "learning: 41,000 of 50,000 events, 3 of 7 days"
        );
    }

    fn example() -> (String, Model) {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(super::super::EXAMPLE_MODEL);
        let text = std::fs::read_to_string(&path).unwrap();
        let model = Model::from_text(&text).unwrap();
        (text, model)
    }

    /// A retrain is held when its alert rate on the newest day's normal events is past the
    /// factor times the model in use's; rates under the calibration target are noise.
    #[test]
    fn a_retrain_is_held_only_when_its_recent_alert_rate_jumps_past_the_factor() {
        let trained = |recent_rate: f64, previous_rate: Option<f64>| Trained {
            model: example().1,
            sample_events: 10_000,
            held_out_rate: 0.001,
            held_out_events: 5_000,
            recent_rate,
            previous_rate,
            recent_events: 5_000,
        };
        assert!(
            !trained(0.5, None).drifted(3.0),
            "a first model has nothing to drift from"
        );
        assert!(!trained(0.002, Some(0.0)).drifted(3.0), "under 3 x 0.1%");
        assert!(trained(0.004, Some(0.0)).drifted(3.0));
        assert!(!trained(0.02, Some(0.01)).drifted(3.0));
        assert!(trained(0.031, Some(0.01)).drifted(3.0));
    }

    /// The first model used to go into use whatever it flagged: now, with nothing in use to
    /// compare with, it is held when its held-out alert rate is above the calibration bound
    /// (one flagged event of the held-out set is noise, not a verdict).
    #[test]
    fn a_first_model_above_the_calibration_bound_is_held() {
        let settings = settings(1_000);
        let trained = |held_out_rate: f64, held_out_events: usize, previous: Option<f64>| Trained {
            model: example().1,
            sample_events: 10_000,
            held_out_rate,
            held_out_events,
            recent_rate: held_out_rate,
            previous_rate: previous,
            recent_events: 1_000,
        };
        assert_eq!(trained(0.001, 5_000, None).hold(&settings), None);
        assert_eq!(
            trained(0.003, 5_000, None).hold(&settings),
            Some(Hold::Uncalibrated)
        );
        assert_eq!(
            trained(1.0 / 400.0, 400, None).hold(&settings),
            None,
            "one event of 400"
        );
        assert_eq!(
            trained(2.0 / 400.0, 400, None).hold(&settings),
            Some(Hold::Uncalibrated)
        );
        // A retrain is judged against the model in use, not the bound.
        assert_eq!(trained(0.003, 5_000, Some(0.002)).hold(&settings), None);
        assert_eq!(
            trained(0.01, 5_000, Some(0.002)).hold(&settings),
            Some(Hold::Drifted)
        );
    }

    /// A held model stays out of use (the engine keeps the active one) until `accept`; then the
    /// engine's next check adopts it, to be swapped in between batches.
    #[tokio::test]
    async fn a_held_retrain_is_kept_out_until_a_person_accepts_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::state::StateStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        let pool = store.pool().clone();
        let (text, _) = example();
        for (status, recent, previous) in [("active", 0.001, None), ("held", 0.05, Some(0.001))] {
            sqlx::query(
                "INSERT INTO anomaly_models (trained_at, trained_by, status, sample_events, held_out_rate, recent_rate, previous_rate, model) VALUES ('2026-11-30T10:00:00Z', 'a', ?, 1000, 0.001, ?, ?, ?)",
            )
            .bind(status)
            .bind(recent)
            .bind(previous)
            .bind(&text)
            .execute(&pool)
            .await
            .unwrap();
        }
        let mut settings = settings(10_000);
        settings.model_file = dir.path().join("learned.model");
        let anomaly = super::super::AnomalyHandle::new(None, 0.9);
        let (learner, _, in_use) = prepare(&pool, settings, &anomaly).await.unwrap();
        assert_eq!(in_use, Some(1));
        assert!(anomaly.current().is_some());
        assert_eq!(learner.status().held.map(|h| h.id), Some(2));
        let config = crate::anomaly::AnomalyConfig::default();
        let shown = stored_status(&pool, &config).await.unwrap().line();
        assert!(shown.contains("held for review: model 2"), "{shown}");

        // Checks before the acceptance keep model 1.
        let mut in_use = in_use;
        check(&learner, &anomaly, &pool, None, &mut in_use)
            .await
            .unwrap();
        assert_eq!(in_use, Some(1));
        assert!(learner.take_pending().is_none());

        assert!(matches!(
            accept(&pool, "operator:test").await.unwrap(),
            Accepted::Model(ModelRow { id: 2, .. })
        ));
        check(&learner, &anomaly, &pool, None, &mut in_use)
            .await
            .unwrap();
        assert_eq!(in_use, Some(2));
        assert!(learner.take_pending().is_some());
        assert_eq!(learner.status().held, None);
        assert!(dir.path().join("learned.model").exists());
        assert_eq!(
            accept(&pool, "operator:test").await.unwrap(),
            Accepted::NothingHeld
        );
    }

    /// A training that fails (too few events of any kind) is reported, the stage keeps
    /// learning, and the next check does not train again at once.
    #[tokio::test]
    async fn a_failed_training_is_reported_and_not_retried_at_every_check() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::state::StateStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        let pool = store.pool().clone();
        let t0 = 1_762_180_205_000;
        sqlx::query("INSERT INTO anomaly_progress (engine, events, first_ts, newest_ts) VALUES ('test', 50, ?, ?)")
            .bind(t0)
            .bind(t0 + 2 * DAY_MS)
            .execute(&pool)
            .await
            .unwrap();
        for i in 0..50 {
            sqlx::query("INSERT INTO anomaly_sample (engine, bucket, slot, seen, ts, event) VALUES ('test', 'login|a|0', ?, 50, ?, ?)")
                .bind(i)
                .bind(t0 + i * 3_600_000)
                .bind(sample_line(&login("a", t0 + i * 3_600_000)))
                .execute(&pool)
                .await
                .unwrap();
        }
        let anomaly = super::super::AnomalyHandle::new(None, 0.9);
        let mut settings = settings(10_000);
        settings.model_file = dir.path().join("learned.model");
        let (learner, restored, mut in_use) = prepare(&pool, settings, &anomaly).await.unwrap();
        assert_eq!(restored, 50);
        let first = check(&learner, &anomaly, &pool, None, &mut in_use).await;
        assert!(first.is_err_and(|e| e.contains("no event type has at least")));
        assert_eq!(learner.status().state, "learning");
        check(&learner, &anomaly, &pool, None, &mut in_use)
            .await
            .unwrap();
        assert!(anomaly.current().is_none());
        let locks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM anomaly_training_lock")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(locks, 0, "the lock is released after a failure");
    }

    /// A stored model this build cannot read (another model format) is set aside: the engine
    /// starts, learns, and trains a new one rather than refusing to run.
    #[tokio::test]
    async fn a_stored_model_of_another_format_is_set_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::state::StateStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        let pool = store.pool().clone();
        let (text, _) = example();
        let other = text.replacen(
            &format!("\"version\": {}", super::super::model::VERSION),
            "\"version\": 99",
            1,
        );
        assert_ne!(other, text);
        for model in [&text, &other] {
            sqlx::query(
                "INSERT INTO anomaly_models (trained_at, trained_by, status, sample_events, held_out_rate, recent_rate, model) VALUES ('2026-11-30T10:00:00Z', 'a', 'active', 1000, 0.001, 0.001, ?)",
            )
            .bind(model)
            .execute(&pool)
            .await
            .unwrap();
        }
        let anomaly = super::super::AnomalyHandle::new(None, 0.9);
        let (learner, _, in_use) = prepare(&pool, settings(1_000), &anomaly).await.unwrap();
        // Model 2 cannot be read: model 1 is in use, and 2 is marked.
        assert_eq!(in_use, Some(1));
        assert_eq!(learner.status().model_id, Some(1));
        let status: String = sqlx::query_scalar("SELECT status FROM anomaly_models WHERE id = 2")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(status, "unreadable");
    }
}
