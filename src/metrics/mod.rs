//! What the running engine counts, and how it is shown: Prometheus text on `/metrics`, with
//! `/healthz` and `/readyz` beside it (`http.rs`).
//!
//! Counters are atomics bumped on the hot path; labelled counters (per rule, per action) are
//! maps behind a mutex, touched only per detection or decided step, which are rare next to
//! events.

pub mod http;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// When and by whom the engine's mode was last set, for `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeChange {
    /// Unix milliseconds; 0 when it was never switched.
    pub since_ms: i64,
    /// `operator:<user>` or the engine's own actor.
    pub by: String,
    pub reason: String,
}

#[derive(Debug, Default)]
struct Histogram {
    /// Observations at or below each bucket's bound (not cumulative; summed when shown).
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    over: AtomicU64,
    count: AtomicU64,
    /// Sum in microseconds.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, value: Duration, times: u64) {
        let seconds = value.as_secs_f64();
        match LATENCY_BUCKETS.iter().position(|b| seconds <= *b) {
            Some(i) => self.buckets[i].fetch_add(times, Ordering::Relaxed),
            None => self.over.fetch_add(times, Ordering::Relaxed),
        };
        self.count.fetch_add(times, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(value.as_micros() as u64 * times, Ordering::Relaxed);
    }
}

/// Everything `/metrics` shows. One per engine process, shared by `Arc`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// The source's label: `jsonl`, `redis_stream`, `redis_channel`.
    source: Mutex<String>,
    received: AtomicU64,
    processed: AtomicU64,
    dead_lettered: AtomicU64,
    time_clamped: AtomicU64,
    redelivered: AtomicU64,
    correlation_groups_evicted: AtomicU64,
    correlation_values_evicted: AtomicU64,
    detections: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Detections by their rule's status, indexed as [`RuleStatus::ALL`]: five series at most,
    /// so `test` detections can be watched apart without a label per rule.
    detections_by_status: [AtomicU64; 5],
    /// Detections an exception dropped, per rule.
    excepted: Mutex<BTreeMap<String, u64>>,
    actions: Mutex<BTreeMap<(String, &'static str), u64>>,
    latency: Histogram,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    manual_mode: AtomicBool,
    /// When and by whom the mode was last set, as last read from the state database (`None`
    /// until the first read).
    mode_change: Mutex<Option<ModeChange>>,
    commit_queue: AtomicI64,
    state_queue: AtomicI64,
    /// Jobs waiting in the effects pool's queue.
    effects_queue: AtomicI64,
    /// Times the committing task found the effects queue full and waited, and for how long.
    effects_queue_waits: AtomicU64,
    effects_queue_wait_micros: AtomicU64,
    /// Pooled steps given up at shutdown, or left by a crashed run and settled at start.
    effects_abandoned: AtomicU64,
    redis_failures: AtomicU64,
    ready: AtomicBool,
    /// Why the last reload was refused, until one succeeds.
    reload_error: Mutex<Option<String>>,
    /// The anomaly stage's learning, when the engine learns its own model.
    learning: Mutex<Option<crate::anomaly::learning::Status>>,
    /// Times a configured limit was hit, per limit (docs/operations.md, "Limits and faults").
    limit_hits: Mutex<BTreeMap<&'static str, u64>>,
    /// Transient faults waited out, per kind.
    faults: Mutex<BTreeMap<&'static str, u64>>,
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn set_source(&self, source: &str) {
        if let Ok(mut s) = self.source.lock() {
            *s = source.to_string();
        }
    }

    pub fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    pub fn processed(&self) {
        self.processed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    /// An event dated too far ahead of the clock was given a plausible time instead.
    pub fn time_clamped(&self, events: u64) {
        self.time_clamped.fetch_add(events, Ordering::Relaxed);
    }

    /// Detections already decided before (a redelivered event), dropped with their steps and
    /// alerts instead of being decided again.
    pub fn redelivered(&self, detections: u64) {
        self.redelivered.fetch_add(detections, Ordering::Relaxed);
    }

    /// What the correlation stage's bounds have evicted since the start (its own totals).
    pub fn set_correlation_evicted(&self, groups: u64, values: u64) {
        self.correlation_groups_evicted
            .store(groups, Ordering::Relaxed);
        self.correlation_values_evicted
            .store(values, Ordering::Relaxed);
    }

    pub fn detection(&self, rule: &str, stage: &'static str) {
        if let Ok(mut map) = self.detections.lock() {
            *map.entry((rule.to_string(), stage)).or_default() += 1;
        }
    }

    pub fn detection_status(&self, status: crate::detection::RuleStatus) {
        if let Some(index) = crate::detection::RuleStatus::ALL
            .iter()
            .position(|s| *s == status)
            && let Some(counter) = self.detections_by_status.get(index)
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A detection of `rule` an exception dropped.
    pub fn excepted(&self, rule: &str) {
        if let Ok(mut map) = self.excepted.lock() {
            *map.entry(rule.to_string()).or_default() += 1;
        }
    }

    pub fn action(&self, action: &str, status: &'static str) {
        if let Ok(mut map) = self.actions.lock() {
            *map.entry((action.to_string(), status)).or_default() += 1;
        }
    }

    /// `events` events took `latency` from being read to being committed.
    pub fn latency(&self, latency: Duration, events: u64) {
        if events > 0 {
            self.latency.observe(latency, events);
        }
    }

    pub fn reloaded(&self, ok: bool) {
        if ok {
            self.reloads.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reload_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn set_reload_error(&self, error: Option<String>) {
        if let Ok(mut e) = self.reload_error.lock() {
            *e = error;
        }
    }

    pub fn reload_error(&self) -> Option<String> {
        self.reload_error.lock().ok().and_then(|e| e.clone())
    }

    /// Where the anomaly stage's learning is (updated at each of its checks).
    pub fn set_learning(&self, status: &crate::anomaly::learning::Status) {
        if let Ok(mut learning) = self.learning.lock() {
            *learning = Some(status.clone());
        }
    }

    pub fn learning(&self) -> Option<crate::anomaly::learning::Status> {
        self.learning.lock().ok().and_then(|l| l.clone())
    }

    /// A configured limit was hit (`http_connections`, `http_header_timeout`, ...).
    pub fn limit_hit(&self, limit: &'static str) {
        if let Ok(mut map) = self.limit_hits.lock() {
            *map.entry(limit).or_default() += 1;
        }
    }

    /// Times each limit was hit, for `/healthz`.
    pub fn limit_hits(&self) -> BTreeMap<&'static str, u64> {
        self.limit_hits
            .lock()
            .map(|map| map.clone())
            .unwrap_or_default()
    }

    /// Transient fault episodes per kind, the state database's included, for `/healthz`.
    pub fn transient_faults(&self) -> BTreeMap<&'static str, u64> {
        let mut faults = self
            .faults
            .lock()
            .map(|map| map.clone())
            .unwrap_or_default();
        faults.insert("state_unavailable", crate::state::transient::episodes());
        faults
    }

    /// A transient fault (`http_accept`, ...) began; it is waited out.
    pub fn fault(&self, fault: &'static str) {
        if let Ok(mut map) = self.faults.lock() {
            *map.entry(fault).or_default() += 1;
        }
    }

    pub fn set_manual_mode(&self, manual: bool) {
        self.manual_mode.store(manual, Ordering::Relaxed);
    }

    /// The mode as read from the state database, with since when and by whom: the engine reads
    /// it every second, so a switch by `palisade mode` in another process shows within one.
    pub fn set_mode(&self, state: &crate::approvals::ModeState) {
        self.manual_mode.store(
            state.mode == crate::approvals::Mode::Manual,
            Ordering::Relaxed,
        );
        if let Ok(mut change) = self.mode_change.lock() {
            *change = Some(ModeChange {
                since_ms: state.since_ms,
                by: state.changed_by.clone(),
                reason: state.reason.clone(),
            });
        }
    }

    /// `auto` or `manual`, and when and by whom it was set (once read).
    pub fn mode(&self) -> (&'static str, Option<ModeChange>) {
        let name = if self.manual_mode.load(Ordering::Relaxed) {
            "manual"
        } else {
            "auto"
        };
        let change = self
            .mode_change
            .lock()
            .ok()
            .and_then(|change| change.clone());
        (name, change)
    }

    pub fn set_queues(&self, commit: usize, state: usize) {
        self.commit_queue.store(commit as i64, Ordering::Relaxed);
        self.state_queue.store(state as i64, Ordering::Relaxed);
    }

    /// Jobs waiting in the effects pool's queue.
    pub fn set_effects_queue(&self, depth: usize) {
        self.effects_queue.store(depth as i64, Ordering::Relaxed);
    }

    /// The committing task found the effects queue full and waited this long for room.
    pub fn effects_queue_waited(&self, waited: Duration) {
        self.effects_queue_waits.fetch_add(1, Ordering::Relaxed);
        self.effects_queue_wait_micros
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
    }

    /// Times the effects queue was full, and the seconds waited for room in all.
    pub fn effects_queue_waits(&self) -> (u64, f64) {
        (
            self.effects_queue_waits.load(Ordering::Relaxed),
            self.effects_queue_wait_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }

    /// Pooled steps given up at shutdown, or left by a crashed run and settled at start.
    pub fn effects_abandoned(&self, steps: u64) {
        self.effects_abandoned.fetch_add(steps, Ordering::Relaxed);
    }

    pub fn set_redis_failures(&self, failures: u64) {
        self.redis_failures.store(failures, Ordering::Relaxed);
    }

    /// The engine reads its source (or has stopped reading it).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn events_processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of everything above.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let source = self.source.lock().map(|s| escape(&s)).unwrap_or_default();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name}{{source=\"{source}\"}} {value}");
        };
        counter(
            "palisade_events_received_total",
            "Messages read from the source.",
            self.received.load(Ordering::Relaxed),
        );
        counter(
            "palisade_events_processed_total",
            "Events that went through the pipeline.",
            self.processed.load(Ordering::Relaxed),
        );
        counter(
            "palisade_events_dead_lettered_total",
            "Messages rejected as not events and kept with the reason.",
            self.dead_lettered.load(Ordering::Relaxed),
        );
        counter(
            "palisade_events_time_clamped_total",
            "Events dated too far ahead of the engine's clock, processed at the newest plausible time instead.",
            self.time_clamped.load(Ordering::Relaxed),
        );
        counter(
            "palisade_redelivered_total",
            "Detections of redelivered events recognised as already decided: not acted on or alerted again.",
            self.redelivered.load(Ordering::Relaxed),
        );
        counter(
            "palisade_correlation_groups_evicted_total",
            "Sigma correlation groups evicted because a correlation held `sigma.correlation.max_groups`.",
            self.correlation_groups_evicted.load(Ordering::Relaxed),
        );
        counter(
            "palisade_correlation_values_evicted_total",
            "Sigma correlation window entries evicted because a group held `sigma.correlation.max_values`.",
            self.correlation_values_evicted.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP palisade_detections_total Detections, per rule (or detector) and stage.\n# TYPE palisade_detections_total counter"
        );
        if let Ok(map) = self.detections.lock() {
            for ((rule, stage), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "palisade_detections_total{{rule=\"{}\",stage=\"{stage}\"}} {n}",
                    escape(rule)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP palisade_detections_by_status_total Detections, per status of the rule that decided (built-in detectors count as stable).\n# TYPE palisade_detections_by_status_total counter"
        );
        for (status, counter) in crate::detection::RuleStatus::ALL
            .iter()
            .zip(&self.detections_by_status)
        {
            let _ = writeln!(
                out,
                "palisade_detections_by_status_total{{status=\"{status}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP palisade_detections_excepted_total Detections dropped by an exception (`exceptions/`), per rule.\n# TYPE palisade_detections_excepted_total counter"
        );
        if let Ok(map) = self.excepted.lock() {
            for (rule, n) in map.iter() {
                let _ = writeln!(
                    out,
                    "palisade_detections_excepted_total{{rule=\"{}\"}} {n}",
                    escape(rule)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP palisade_actions_total Decided steps, per action and final status.\n# TYPE palisade_actions_total counter"
        );
        if let Ok(map) = self.actions.lock() {
            for ((action, status), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "palisade_actions_total{{action=\"{}\",status=\"{status}\"}} {n}",
                    escape(action)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP palisade_queue_depth Batches waiting, per queue.\n# TYPE palisade_queue_depth gauge"
        );
        let _ = writeln!(
            out,
            "palisade_queue_depth{{queue=\"commit\"}} {}\npalisade_queue_depth{{queue=\"state_writer\"}} {}\npalisade_queue_depth{{queue=\"effects\"}} {}",
            self.commit_queue.load(Ordering::Relaxed),
            self.state_queue.load(Ordering::Relaxed),
            self.effects_queue.load(Ordering::Relaxed)
        );
        let (waits, waited) = self.effects_queue_waits();
        let _ = writeln!(
            out,
            "# HELP palisade_effects_queue_full_total Times the effects queue was full and committing waited for room.\n# TYPE palisade_effects_queue_full_total counter\npalisade_effects_queue_full_total {waits}\n# HELP palisade_effects_queue_wait_seconds_total Time committing waited for room in the effects queue.\n# TYPE palisade_effects_queue_wait_seconds_total counter\npalisade_effects_queue_wait_seconds_total {waited}\n# HELP palisade_effects_abandoned_total Pooled steps given up at shutdown, or left by a crashed run and settled at start (recorded as abandoned).\n# TYPE palisade_effects_abandoned_total counter\npalisade_effects_abandoned_total {}",
            self.effects_abandoned.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP palisade_pipeline_latency_seconds From an event read to its results committed.\n# TYPE palisade_pipeline_latency_seconds histogram"
        );
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "palisade_pipeline_latency_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.latency.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "palisade_pipeline_latency_seconds_bucket{{le=\"+Inf\"}} {count}\npalisade_pipeline_latency_seconds_sum {}\npalisade_pipeline_latency_seconds_count {count}",
            self.latency.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        for (name, help, value) in [
            (
                "palisade_reloads_total",
                "Content or model changes taken into use.",
                self.reloads.load(Ordering::Relaxed),
            ),
            (
                "palisade_reload_failures_total",
                "Changes refused because they did not validate; the previous set kept running.",
                self.reload_failures.load(Ordering::Relaxed),
            ),
            (
                "palisade_redis_failures_total",
                "Failed Redis operations and connection attempts.",
                self.redis_failures.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let (indexed, failed, retries) = crate::sinks::elasticsearch::counters();
        for (name, help, value) in [
            (
                "palisade_es_indexed_total",
                "Alerts indexed into Elasticsearch.",
                indexed,
            ),
            (
                "palisade_es_failed_total",
                "Alerts Elasticsearch refused for good (4xx items), dropped.",
                failed,
            ),
            (
                "palisade_es_retries_total",
                "Bulk requests sent again after a 429, a 5xx or no answer.",
                retries,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP palisade_outbound_limit_hits_total Calls out refused by a limit, per edge (feed, webhook) and limit.\n# TYPE palisade_outbound_limit_hits_total counter"
        );
        for (edge, limit, n) in crate::outbound::limit_hits() {
            let _ = writeln!(
                out,
                "palisade_outbound_limit_hits_total{{edge=\"{edge}\",limit=\"{limit}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP palisade_limit_hits_total Times a configured limit was hit, per limit.\n# TYPE palisade_limit_hits_total counter"
        );
        if let Ok(map) = self.limit_hits.lock() {
            for (limit, n) in map.iter() {
                let _ = writeln!(out, "palisade_limit_hits_total{{limit=\"{limit}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP palisade_transient_faults_total Faults that pass by themselves, waited out with backoff, per kind (an episode counts once).\n# TYPE palisade_transient_faults_total counter"
        );
        let state = crate::state::transient::episodes();
        let _ = writeln!(
            out,
            "palisade_transient_faults_total{{fault=\"state_unavailable\"}} {state}"
        );
        if let Ok(map) = self.faults.lock() {
            for (fault, n) in map.iter() {
                let _ = writeln!(
                    out,
                    "palisade_transient_faults_total{{fault=\"{fault}\"}} {n}"
                );
            }
        }
        let manual = self.manual_mode.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP palisade_mode The engine's mode: 1 for the current one.\n# TYPE palisade_mode gauge\npalisade_mode{{mode=\"auto\"}} {}\npalisade_mode{{mode=\"manual\"}} {}",
            u8::from(!manual),
            u8::from(manual)
        );
        if let Some(change) = self.mode().1 {
            // 0 when the mode was never switched (it has been the default since the start).
            let _ = writeln!(
                out,
                "# HELP palisade_mode_since_seconds When the current mode was set (Unix time; 0: never switched).\n# TYPE palisade_mode_since_seconds gauge\npalisade_mode_since_seconds {}",
                change.since_ms / 1000
            );
        }
        let _ = writeln!(
            out,
            "# HELP palisade_ready Whether the engine is reading its source.\n# TYPE palisade_ready gauge\npalisade_ready {}",
            u8::from(self.is_ready())
        );
        if let Some(status) = self.learning() {
            let _ = writeln!(
                out,
                "# HELP palisade_anomaly_state The anomaly stage's state: 1 for the current one.\n# TYPE palisade_anomaly_state gauge"
            );
            for state in ["learning", "training", "scoring"] {
                let _ = writeln!(
                    out,
                    "palisade_anomaly_state{{state=\"{state}\"}} {}",
                    u8::from(status.state == state)
                );
            }
            for (name, help, value) in [
                (
                    "palisade_anomaly_learning_events",
                    "Events offered to the learning sample (not flagged), every engine sharing the state database.",
                    status.events,
                ),
                (
                    "palisade_anomaly_learning_min_events",
                    "Events needed before the first model is trained.",
                    status.min_events,
                ),
                (
                    "palisade_anomaly_learning_days",
                    "Whole days of event time the sample spans.",
                    status.days,
                ),
                (
                    "palisade_anomaly_learning_min_days",
                    "Days needed before the first model is trained.",
                    u64::from(status.min_days),
                ),
                (
                    "palisade_anomaly_sample_events",
                    "Events kept in the learning sample.",
                    status.sample,
                ),
                (
                    "palisade_anomaly_model_held",
                    "1 while a model (a drifted retrain, or a first model above the calibration bound) is held for `palisade model accept`.",
                    u64::from(status.held.is_some()),
                ),
            ] {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
                );
            }
        }
        out
    }
}

impl crate::actions::pool::EffectsObserver for Metrics {
    fn action(&self, action: &str, status: &'static str) {
        Metrics::action(self, action, status);
    }
    fn queue_waited(&self, waited: Duration) {
        self.effects_queue_waited(waited);
    }
    fn queue_depth(&self, depth: usize) {
        self.set_effects_queue(depth);
    }
    fn abandoned(&self, steps: u64) {
        self.effects_abandoned(steps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_line_is_a_name_optional_labels_and_a_number() {
        let metrics = Metrics::default();
        metrics.set_source("redis_stream");
        metrics.received();
        metrics.processed();
        metrics.detection("office \"spawns\" shell", "rule");
        metrics.detection_status(crate::detection::RuleStatus::Test);
        metrics.action("process.kill", "dry_run");
        metrics.latency(Duration::from_millis(3), 500);
        let text = metrics.render();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(text.contains("palisade_events_processed_total{source=\"redis_stream\"} 1"));
        assert!(text.contains("rule=\"office \\\"spawns\\\" shell\""));
        assert!(text.contains("palisade_detections_by_status_total{status=\"test\"} 1"));
        assert!(text.contains("palisade_detections_by_status_total{status=\"stable\"} 0"));
        assert!(text.contains("palisade_pipeline_latency_seconds_bucket{le=\"0.005\"} 500"));
        assert!(text.contains("palisade_pipeline_latency_seconds_bucket{le=\"0.0025\"} 0"));
    }

    /// The effects pool's counters, seen through a real executor whose pool posts to a real
    /// local webhook receiver that never answers.
    mod effects {
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        use super::Metrics;
        use crate::actions::executor::tests::{
            hanging_receiver, notification, pooled_in, rows, settings,
        };
        use crate::actions::{ActionRecord, ActionStatus};

        /// Defect (issue 15.5): nothing bounded or showed what waits on outside systems. A full
        /// queue makes the committing task wait for room, and the waits are counted.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_full_effects_queue_makes_committing_wait_and_the_wait_is_counted() {
            let dir = tempfile::tempdir().unwrap();
            let (url, _) = hanging_receiver().await;
            let metrics = Arc::new(Metrics::default());
            let (executor, _, _trigger) = pooled_in(
                dir.path(),
                settings(1, 1, Duration::from_millis(600), Duration::from_secs(5)),
                Some(metrics.clone() as _),
            )
            .await;
            assert_eq!(metrics.effects_queue_waits().0, 0);
            // One runs (and hangs), one waits in the queue, the third finds it full.
            let mut batch: Vec<ActionRecord> = ["e1", "e2", "e3"]
                .iter()
                .map(|e| notification(&url, e, None))
                .collect();
            let started = Instant::now();
            let dispatched = executor.run(&mut batch, &[], &[]).await.unwrap();
            let took = started.elapsed();
            drop(dispatched);
            assert!(batch.iter().all(|a| a.status == ActionStatus::Dispatched));
            let (waits, waited) = metrics.effects_queue_waits();
            // One wait at least: the third job found the queue full (the second may have too, if
            // the worker had not yet taken the first).
            assert!(waits >= 1, "{}", metrics.render());
            assert!(
                waited >= 0.4 && took >= Duration::from_millis(400),
                "{waited} {took:?}"
            );
            let text = metrics.render();
            assert!(
                text.contains(&format!("palisade_effects_queue_full_total {waits}")),
                "{text}"
            );
            assert!(
                text.contains("palisade_queue_depth{queue=\"effects\"}"),
                "{text}"
            );
        }

        /// Defect (issue 15.5): shutdown waited on a hanging receiver without bound. Closing the
        /// pool waits its shutdown wait, then records the step it gave up on as abandoned.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn closing_the_pool_is_bounded_and_records_the_abandoned_step() {
            let dir = tempfile::tempdir().unwrap();
            let (url, came) = hanging_receiver().await;
            let metrics = Arc::new(Metrics::default());
            let (executor, store, _trigger) = pooled_in(
                dir.path(),
                settings(1, 4, Duration::from_secs(60), Duration::from_millis(300)),
                Some(metrics.clone() as _),
            )
            .await;
            let mut batch = vec![notification(&url, "e1", None)];
            let dispatched = executor.run(&mut batch, &[], &[]).await.unwrap();
            store
                .write(&crate::state::Batch {
                    actions: batch,
                    ..Default::default()
                })
                .await
                .unwrap();
            drop(dispatched);
            for _ in 0..100 {
                if came.load(std::sync::atomic::Ordering::SeqCst) == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let started = Instant::now();
            assert_eq!(executor.close_pool().await.unwrap(), 1);
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
            let stored = rows(&store, "e1").await;
            assert_eq!(stored[0].1, "abandoned", "{stored:?}");
            assert!(
                stored[0]
                    .2
                    .as_deref()
                    .unwrap_or_default()
                    .starts_with("abandoned at shutdown"),
                "{stored:?}"
            );
            let abandoned: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM audit WHERE kind = 'abandoned' AND event_id = 'e1'",
            )
            .fetch_one(store.pool())
            .await
            .unwrap();
            assert_eq!(abandoned, 1);
            assert!(
                metrics
                    .render()
                    .contains("palisade_effects_abandoned_total 1")
            );
        }
    }
}
