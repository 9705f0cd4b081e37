//! The running engine: a [`Pipeline`] with its intake and outputs, driven by one source.
//!
//! Every source hands the engine raw messages; [`Engine::handle`] normalizes and processes each
//! one and gathers what it decided into a [`Handled`] batch. The drivers in [`drive`] then
//! commit the batch: its decisions are stored, the executor acts on the steps, and the outcomes
//! are stored with the alerts that report them; only then is the input acknowledged. Every
//! output (console, replay lines, state rows, alerts, metrics, audit) is written from the
//! outcomes, never from the plan.

pub mod drive;
pub mod learning;
pub mod reload;

// Shutdown lives at the bottom of the crate (every task watches it); re-exported for callers
// that wire an engine.
pub use crate::shutdown::{Shutdown, ShutdownTrigger};
// The console sink owns how it prints; re-exported for callers that wire an engine.
pub use crate::sinks::AlertFormat;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::actions::ActionRecord;
use crate::content::Content;
use crate::detection::{Detection, Entity};
use crate::event::{Event, NormalizeError};
use crate::pipeline::{Outcome, Pipeline};
use crate::sinks::{action_line, detection_line};
use crate::sources::Intake;
use crate::state::{Batch, DetectionRow};

/// Running totals, for the closing summary and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    pub events: u64,
    pub rejected: u64,
    pub detections: u64,
    pub actions: u64,
    pub rule_failures: u64,
}

/// What one batch of messages produced, waiting to be committed.
#[derive(Debug, Default)]
pub struct Handled {
    pub state: Batch,
    /// Reasons planning asked for manual mode (a step with `on_failure: degrade` failed).
    pub degrade: Vec<String>,
}

impl Handled {
    /// Appends what a later batch produced.
    pub fn absorb(&mut self, mut later: Handled) {
        self.state.absorb(later.state);
        self.degrade.append(&mut later.degrade);
    }

    pub fn clear(&mut self) {
        self.state = crate::state::Batch::default();
        self.degrade.clear();
    }
}

pub struct Engine {
    pipeline: Pipeline,
    intake: Intake,
    format: AlertFormat,
    outcome: Outcome,
    counters: Counters,
    /// Rule failures, counted and written at a bounded rate.
    failure_log: crate::rules::FailureLog,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// New pipelines built by the reloader, swapped in between batches.
    reloads: Option<std::sync::mpsc::Receiver<Pipeline>>,
    counts_flushed: std::time::Instant,
}

/// How often the tracker's day counts go to storage.
const COUNTS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Engine {
    /// Alert documents are not built here: the commit path builds them from the steps'
    /// outcomes, when the outputs publish alerts ([`drive::Outputs::alerts`]).
    pub fn new(
        content: Arc<Content>,
        intel: crate::intel::IntelHandle,
        intake: Intake,
        format: AlertFormat,
        stages: crate::pipeline::Stages,
    ) -> Result<Engine, crate::pipeline::PipelineError> {
        let dry_run = content.config.actions.dry_run;
        let mut intake = intake;
        // A restored tracker knows the newest plausible event time: an event clamped before any
        // other arrives is given that time, so it cannot move the tracker's retention.
        if let Some(newest) = stages.tracker.as_ref().and_then(|t| t.newest()) {
            intake.saw_time(newest);
        }
        Ok(Engine {
            pipeline: Pipeline::with_stages(content, dry_run, intel, stages)?,
            intake,
            format,
            outcome: Outcome::default(),
            counters: Counters::default(),
            failure_log: crate::rules::FailureLog::default(),
            metrics: None,
            reloads: None,
            counts_flushed: std::time::Instant::now(),
        })
    }

    /// Takes new pipelines from the reloader (`reload::spawn`).
    pub fn with_reloads(mut self, reloads: std::sync::mpsc::Receiver<Pipeline>) -> Engine {
        self.reloads = Some(reloads);
        self
    }

    /// Swaps in the newest pipeline the reloader built, if there is one. Called between
    /// batches, so every event of a batch sees one set of rules and playbooks.
    pub fn apply_reload(&mut self) {
        let Some(reloads) = &self.reloads else { return };
        let mut newest = None;
        while let Ok(pipeline) = reloads.try_recv() {
            newest = Some(pipeline);
        }
        if let Some(pipeline) = newest {
            self.pipeline = pipeline;
        }
        self.apply_learned();
    }

    /// Swaps in a model the learner trained or adopted since the last batch.
    fn apply_learned(&mut self) {
        let stages = self.pipeline.stages();
        if let Some(model) = stages.learner.as_ref().and_then(|l| l.take_pending()) {
            stages.anomaly.swap(model);
        }
    }

    /// Counts what goes through on `metrics` (shown on `/metrics`).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Engine {
        self.metrics = Some(metrics);
        self
    }

    /// How committed batches are shown on standard output.
    pub fn format(&self) -> AlertFormat {
        self.format
    }

    pub fn content(&self) -> &Arc<Content> {
        self.pipeline.content()
    }

    pub fn counters(&self) -> Counters {
        Counters {
            rejected: self.intake.rejected_total(),
            ..self.counters.clone()
        }
    }

    /// Normalizes and processes one message; its results are appended to `handled`. A message
    /// that is not an event comes back as the error (already counted and dead-lettered).
    pub fn handle(
        &mut self,
        origin: &dyn std::fmt::Display,
        raw: &[u8],
        handled: &mut Handled,
    ) -> Result<(), NormalizeError> {
        let clamped = self.intake.clamped();
        let accepted = self.intake.accept(origin, raw);
        let event = self.accepted(accepted, clamped)?;
        self.process(&event, handled);
        Ok(())
    }

    /// Counts and dead-letters a message found to hold no event before it could be read (a
    /// stream entry without its `data` field); `raw` is what is kept of it.
    pub fn reject(
        &mut self,
        origin: &dyn std::fmt::Display,
        raw: &[u8],
        err: NormalizeError,
    ) -> NormalizeError {
        let err = self.intake.reject(origin, raw, err);
        self.count(true, self.intake.clamped());
        err
    }

    /// Counts a message read, and rejected when it was, or clamped (the intake had clamped
    /// `clamped_before` events before it).
    fn accepted(
        &self,
        result: Result<Event, NormalizeError>,
        clamped_before: u64,
    ) -> Result<Event, NormalizeError> {
        self.count(result.is_err(), clamped_before);
        result
    }

    fn count(&self, rejected: bool, clamped_before: u64) {
        if let Some(metrics) = &self.metrics {
            metrics.received();
            if rejected {
                metrics.dead_lettered();
            }
            let clamped = self.intake.clamped().saturating_sub(clamped_before);
            if clamped > 0 {
                metrics.time_clamped(clamped);
            }
        }
    }

    /// A batch is complete: what the tracker counted over its events, and how far stored
    /// records may be pruned, go with it (so they are committed with the events they describe).
    pub fn end_batch(&mut self, handled: &mut Handled) {
        self.flush_tracker(handled, false);
        self.flush_correlation(handled);
        self.flush_learning(handled);
    }

    /// The learning progress and the sample's pruning go with the batch whose events made them.
    fn flush_learning(&mut self, handled: &mut Handled) {
        if let Some(learner) = &self.pipeline.stages().learner {
            handled.state.sample_state.absorb(learner.take_state());
        }
    }

    /// The correlation windows the batch changed go with it, every batch: a window that lags
    /// its acknowledged events would count them again, or not at all, after a restart.
    fn flush_correlation(&mut self, handled: &mut Handled) {
        if let Some(correlation) = &self.pipeline.stages().correlation {
            handled
                .state
                .correlation
                .append(&mut correlation.take_changes());
            if let Some(metrics) = &self.metrics {
                let evicted = correlation.evicted();
                metrics.set_correlation_evicted(evicted.groups, evicted.values);
            }
        }
    }

    /// The tracker's day counts are written at most once a second (a row per host and kind
    /// with every small batch cost more than the batch's own rows); `all` writes what is left,
    /// at the end.
    fn flush_tracker(&mut self, handled: &mut Handled, all: bool) {
        if let Some(tracker) = &self.pipeline.stages().tracker {
            let due = all || self.counts_flushed.elapsed() >= COUNTS_EVERY;
            let counts = if due {
                self.counts_flushed = std::time::Instant::now();
                tracker.take_counts()
            } else {
                Default::default()
            };
            if !counts.is_empty() {
                handled.state.absorb(crate::state::Batch {
                    behaviour_days: counts,
                    ..Default::default()
                });
            }
            if let Some(horizon) = tracker.take_pruned() {
                handled.state.behaviour_horizon = Some(horizon);
            }
        }
    }

    /// What is still to be stored when the input has ended or the engine stops.
    pub fn finish(&mut self) -> crate::state::Batch {
        let mut handled = Handled::default();
        self.flush_tracker(&mut handled, true);
        self.flush_correlation(&mut handled);
        self.flush_learning(&mut handled);
        self.failure_log.flush();
        handled.state
    }

    /// Processes one line of a JSON-lines source.
    pub fn handle_line(
        &mut self,
        origin: &dyn std::fmt::Display,
        line: &crate::sources::jsonl::Line,
        handled: &mut Handled,
    ) -> Result<(), NormalizeError> {
        let clamped = self.intake.clamped();
        let accepted = self.intake.accept_line(origin, line);
        let event = self.accepted(accepted, clamped)?;
        self.process(&event, handled);
        Ok(())
    }

    fn process(&mut self, event: &Event, handled: &mut Handled) {
        self.counters.events += 1;
        self.outcome.clear();
        self.pipeline.process(event, &mut self.outcome);
        crate::engine::log_problems(&self.outcome, &mut self.failure_log);
        let outcome = &self.outcome;
        self.counters.detections += outcome.detections.len() as u64;
        self.counters.actions += outcome.actions.len() as u64;
        self.counters.rule_failures += outcome.failures.len() as u64;
        if let Some(metrics) = &self.metrics {
            // Detections are counted when they are decided (`drive`), so a redelivered event's
            // are not counted twice.
            metrics.processed();
            for excepted in &outcome.excepted {
                metrics.excepted(&excepted.rule);
            }
        }
        handled.state.behaviour.append(&mut self.outcome.behaviour);
        handled.state.reported.append(&mut self.outcome.reported);
        handled.state.sample.append(&mut self.outcome.sample);
        let outcome = &self.outcome;
        if outcome.detections.is_empty() {
            return;
        }
        for detection in &outcome.detections {
            handled.state.detections.push(DetectionRow {
                detection: detection.clone(),
                event_time: event.timestamp_rfc3339(),
                host: event.host.clone(),
            });
        }
        handled
            .state
            .actions
            .extend(outcome.actions.iter().cloned());
        handled.degrade.extend(outcome.degrade.iter().cloned());
    }
}

/// Logs the rule failures (through `failures`, which writes each rule's first failure and then
/// periodic counts) and the manual-mode requests of one event's outcome.
pub fn log_problems(outcome: &Outcome, failures: &mut crate::rules::FailureLog) {
    for failure in &outcome.failures {
        failures.record(failure);
    }
    for reason in &outcome.degrade {
        tracing::error!("a step asked for manual mode: {reason}");
    }
    for excepted in &outcome.excepted {
        tracing::debug!(
            rule = &*excepted.rule,
            event_id = excepted.event_id.as_str(),
            "detection of rule `{}` on event `{}` dropped by the exception at {}: {}",
            excepted.rule,
            excepted.event_id,
            excepted.exception.place(),
            excepted.exception.reason
        );
    }
}

pub use crate::state::alert_id;

/// The alert document published for a detection: the replay detection line, the event's host
/// and time, its steps with the outcomes the executor decided, the fields the seeds'
/// responders read (`level`, `actionable_pid`), and `alert_id`, the detection's key, which is
/// the same on every copy of one alert so a consumer can drop a repeat.
pub fn alert(row: &DetectionRow, actions: &[&ActionRecord]) -> Value {
    let detection: &Detection = &row.detection;
    let mut value = detection_line(detection);
    value["kind"] = json!("alert");
    value["alert_id"] = json!(alert_id(row));
    value["host"] = json!(row.host);
    value["timestamp"] = json!(row.event_time);
    value["level"] = json!(detection.severity.as_str().to_uppercase());
    if let Some(Entity::Process { pid, .. }) = &detection.entity {
        value["actionable_pid"] = json!(pid);
    }
    value["actions"] = Value::Array(actions.iter().map(|a| action_line(a)).collect());
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(metrics: &Arc<crate::metrics::Metrics>) -> Engine {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let content = Arc::new(crate::content::load(dir, None).unwrap());
        let stages = crate::pipeline::Stages::from_content(&content).unwrap();
        Engine::new(
            content,
            crate::intel::IntelHandle::default(),
            Intake::new(None),
            AlertFormat::Quiet,
            stages,
        )
        .unwrap()
        .with_metrics(metrics.clone())
    }

    /// A far-future event is processed at the newest plausible time, and counted on
    /// `/metrics`.
    #[test]
    fn a_far_future_event_is_clamped_and_counted() {
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let mut engine = engine(&metrics);
        let mut handled = Handled::default();
        for (line, time) in [
            (1, "\"2025-11-03T14:30:05Z\""),
            (2, "\"9000-01-01T00:00:00Z\""),
        ] {
            let raw =
                format!(r#"{{"type":"login","timestamp":{time},"host":"dc-01","user":"u{line}"}}"#);
            engine
                .handle(
                    &format!("events.jsonl:{line}"),
                    raw.as_bytes(),
                    &mut handled,
                )
                .unwrap();
        }
        let text = metrics.render();
        assert!(
            text.contains("palisade_events_time_clamped_total{source=\"\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("palisade_events_processed_total{source=\"\"} 2"),
            "{text}"
        );
        // The tracker saw the clamped login at the first one's time.
        let tracker = engine.pipeline.stages().tracker.clone().unwrap();
        assert_eq!(tracker.newest(), Some(1_762_180_205_000));
    }

    /// The windows a batch changed go with that batch (so they are stored before its input is
    /// acknowledged), and what the correlation bounds evicted is on `/metrics`.
    #[test]
    fn correlation_windows_go_with_their_batch_and_evictions_are_counted() {
        use crate::sigma::correlation::{
            Bound, Correlation, CorrelationHandle, CorrelationType, window::Limits,
        };
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let content = Arc::new(crate::content::load(dir, None).unwrap());
        let correlation = Correlation {
            name: None,
            path: "rules/c.yml".into(),
            id: "office-shells-per-host".into(),
            title: "Office started shells on one host".into(),
            severity: crate::detection::Severity::High,
            tags: Arc::from(Vec::<String>::new()),
            kind: CorrelationType::EventCount,
            rules: vec!["office-spawns-shell".into()],
            group_by: vec![crate::event::Field::Host],
            timespan_ms: 60_000,
            condition: vec![Bound::Gte(100)],
            field: None,
            attribution: None,
            status: crate::detection::RuleStatus::Stable,
            generate: true,
        };
        let handle = CorrelationHandle::new(
            vec![correlation],
            Limits {
                max_groups: 1,
                max_values: 10,
            },
        );
        let stages = crate::pipeline::Stages {
            correlation: Some(handle),
            ..crate::pipeline::Stages::from_content(&content).unwrap()
        };
        let mut engine = Engine::new(
            content,
            crate::intel::IntelHandle::default(),
            Intake::new(None),
            AlertFormat::Quiet,
            stages,
        )
        .unwrap()
        .with_metrics(metrics.clone());
        let mut handled = Handled::default();
        for host in ["ws-1", "ws-2"] {
            let raw = format!(
                r#"{{"type":"process_create","timestamp":"2025-11-03T14:30:10Z","host":"{host}","pid":4200001,"name":"cmd.exe","parent_name":"WINWORD.EXE","cmdline":"cmd.exe /c whoami"}}"#
            );
            engine
                .handle(&"events.jsonl", raw.as_bytes(), &mut handled)
                .unwrap();
        }
        engine.end_batch(&mut handled);
        let mut keys: Vec<(&str, bool)> = handled
            .state
            .correlation
            .iter()
            .map(|row| (row.key.as_str(), row.state.is_some()))
            .collect();
        keys.sort_unstable();
        // ws-1's window was evicted for ws-2's (one group at most): deleted, ws-2's stored.
        assert_eq!(keys, [(r#"["ws-1"]"#, false), (r#"["ws-2"]"#, true)]);
        let text = metrics.render();
        assert!(
            text.contains("palisade_correlation_groups_evicted_total{source=\"\"} 1"),
            "{text}"
        );
    }
}
