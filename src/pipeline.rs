//! One worker's path for an event: rules decide, the anomaly model and the behaviour tracker
//! add what rules cannot see, playbooks plan.
//!
//! ```text
//! Event ──► intel ──► RuleEngine ──► (no rule matched) AnomalyModel ──► Tracker ──► Correlation ──► Planner
//!                     (indexed,       score ≥ threshold: detection      records,     windows per     actions
//!                      pre-filtered)                                    detectors    group-by values
//! ```
//!
//! Each worker owns one [`Pipeline`]; the [`Content`] it was built from is shared and immutable,
//! so a reload builds new pipelines off to the side and swaps them in. The model and the
//! tracker are shared handles: the model is swapped when its file changes, the tracker's
//! summary outlives any one pipeline.

pub mod explain;

use std::sync::Arc;

use crate::actions::ActionRecord;
use crate::anomaly::AnomalyHandle;
use crate::anomaly::learning::Learner;
use crate::content::Content;
use crate::detection::Detection;
use crate::event::Event;
use crate::intel::{IntelHandle, IntelHit};
use crate::playbooks::{PlanOutcome, Planner};
use crate::rules::{RuleEngine, RuleFailure};
use crate::sigma::SigmaEngine;
use crate::sigma::correlation::CorrelationHandle;
use crate::tracker::{BehaviourRecord, TrackerHandle};

/// Everything one event produced. Reused across events to avoid allocating per event.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    pub detections: Vec<Detection>,
    pub actions: Vec<ActionRecord>,
    pub failures: Vec<RuleFailure>,
    /// Reasons a step asked the engine to switch to manual mode.
    pub degrade: Vec<String>,
    /// The tracker's records of the events, to be stored.
    pub behaviour: Vec<BehaviourRecord>,
    /// Patterns the tracker reported, to be stored.
    pub reported: Vec<(String, String, i64)>,
    /// Changes to the anomaly stage's learning sample, to be stored.
    pub sample: Vec<crate::anomaly::learning::SampleRow>,
    /// Detections an exception (`exceptions/*.yaml`) dropped, to be counted and shown at debug.
    pub excepted: Vec<Excepted>,
}

/// A detection an exception dropped before it was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Excepted {
    pub rule: Arc<str>,
    pub event_id: String,
    pub exception: Arc<crate::rules::Exception>,
}

impl Outcome {
    pub fn clear(&mut self) {
        self.detections.clear();
        self.actions.clear();
        self.failures.clear();
        self.degrade.clear();
        self.behaviour.clear();
        self.reported.clear();
        self.sample.clear();
        self.excepted.clear();
    }
}

/// The stages after the rules, as shared handles.
#[derive(Clone, Default)]
pub struct Stages {
    /// Scores events no rule matched; without a model, nothing is scored.
    pub anomaly: AnomalyHandle,
    /// Samples the events nothing flagged, while the engine learns its own model (`None`
    /// outside `palisade run`, or with a model file named).
    pub learner: Option<Learner>,
    /// The behaviour tracker; `None` when it is off.
    pub tracker: Option<TrackerHandle>,
    /// Sigma correlation rules over the detections above; `None` when none are loaded.
    pub correlation: Option<CorrelationHandle>,
}

/// Why a worker's pipeline could not be built from its content.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Model(#[from] crate::anomaly::ModelError),
    #[error(transparent)]
    Rules(#[from] crate::rules::RuleCompileError),
    #[error("actions: {0}")]
    Policy(#[from] crate::config::PolicyError),
}

impl Stages {
    /// The stages as the content's config describes them: the named model file loaded from the
    /// content directory when it exists (no model otherwise: a learned one comes from the
    /// running engine), a fresh in-memory tracker.
    pub fn from_content(content: &Content) -> Result<Stages, PipelineError> {
        let config = &content.config;
        let model = match &config.anomaly.model {
            Some(path) if config.anomaly.enabled => {
                crate::anomaly::load_optional(&content.resolve(path))?
            }
            _ => None,
        };
        Ok(Stages {
            anomaly: AnomalyHandle::new(model, config.anomaly.threshold),
            learner: None,
            tracker: Stages::fresh_tracker(content),
            correlation: Some(Stages::fresh_correlation(content)),
        })
    }

    /// The content's correlation rules with empty windows (a handle even without rules, so a
    /// reload can give it some).
    pub fn fresh_correlation(content: &Content) -> CorrelationHandle {
        CorrelationHandle::new(
            content.running_correlations(),
            crate::sigma::correlation::Limits::from_config(&content.config.sigma.correlation),
        )
    }

    /// An empty tracker as the content's config describes it (none when it is off).
    pub fn fresh_tracker(content: &Content) -> Option<TrackerHandle> {
        let config = &content.config.tracker;
        config
            .enabled
            .then(|| TrackerHandle::new(crate::tracker::Settings::from_config(config)))
    }

    /// Rules and playbooks only.
    pub fn none() -> Stages {
        Stages::default()
    }
}

/// Which loaded rules a pipeline runs. Disabled rules never run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RuleSelection {
    /// What the engine runs: enabled rules of a status `rules.statuses` chooses.
    #[default]
    Configured,
    /// Every enabled rule, whatever its status: a rule's own test cases run even where this
    /// config would not run the rule (a `test` or `experimental` rule needs its tests most).
    EveryStatus,
}

pub struct Pipeline {
    content: Arc<Content>,
    intel: IntelHandle,
    hits: Vec<IntelHit>,
    rules: RuleEngine,
    sigma: SigmaEngine,
    planner: Planner,
    dry_run: bool,
    plan: PlanOutcome,
    stages: Stages,
    features: Vec<f64>,
}

impl Pipeline {
    /// Builds a worker's pipeline. `dry_run` overrides nothing when false: shadow playbooks still
    /// only report.
    pub fn new(
        content: Arc<Content>,
        dry_run: bool,
        intel: IntelHandle,
    ) -> Result<Pipeline, PipelineError> {
        let stages = Stages::from_content(&content)?;
        Pipeline::with_stages(content, dry_run, intel, stages)
    }

    /// Builds a pipeline around given stage handles (the engine shares a reloading model and a
    /// tracker restored from the state database).
    pub fn with_stages(
        content: Arc<Content>,
        dry_run: bool,
        intel: IntelHandle,
        stages: Stages,
    ) -> Result<Pipeline, PipelineError> {
        Pipeline::with_selection(content, dry_run, intel, stages, RuleSelection::Configured)
    }

    /// As [`Pipeline::with_stages`], running the rules `selection` names.
    pub fn with_selection(
        content: Arc<Content>,
        dry_run: bool,
        intel: IntelHandle,
        stages: Stages,
        selection: RuleSelection,
    ) -> Result<Pipeline, PipelineError> {
        let chosen = match selection {
            RuleSelection::Configured => content.config.rules.clone(),
            RuleSelection::EveryStatus => crate::rules::RulesConfig {
                statuses: crate::detection::RuleStatus::ALL.to_vec(),
            },
        };
        let running: Vec<_> = content
            .rules
            .iter()
            .filter(|rule| chosen.runs(rule.enabled, rule.status))
            .cloned()
            .collect();
        let rules = RuleEngine::build_in(
            &running,
            &content.config.limits,
            &intel,
            stages.tracker.as_ref(),
            &content.library,
        )?;
        let policy = content.config.actions.policy(&content.config.redis.url)?;
        let planner = Planner::new(&content.config.limits, &intel, policy);
        let sigma = SigmaEngine::build(
            &content.sigma.rules,
            content.sigma.compiled.clone(),
            &chosen.statuses,
        );
        Ok(Pipeline {
            content,
            intel,
            hits: Vec::new(),
            rules,
            sigma,
            planner,
            dry_run,
            plan: PlanOutcome::default(),
            stages,
            features: Vec::new(),
        })
    }

    pub fn content(&self) -> &Arc<Content> {
        &self.content
    }

    pub fn stages(&self) -> &Stages {
        &self.stages
    }

    /// Runs `event` through every stage, appending to `out` (which the caller clears).
    ///
    /// A playbook runs at most once per event, for the most severe detection that matches its
    /// trigger (the first of equals): two rules seeing the same malicious process must not kill
    /// it twice or page the on-call twice.
    pub fn process(&mut self, event: &Event, out: &mut Outcome) {
        let first_new = out.detections.len();
        self.hits.clear();
        self.intel.current().enrich(event, &mut self.hits);
        self.rules
            .evaluate(event, &self.hits, &mut out.detections, &mut out.failures);
        self.sigma.evaluate(event, &mut out.detections);
        // Excepted before the anomaly stage looks: an exception silences one rule, it does not
        // vouch for the event.
        self.except(event, out, first_new);
        if out.detections.len() == first_new {
            match self.stages.anomaly.detect(event, &mut self.features) {
                Some(detection) => out.detections.push(detection),
                // What nothing flagged is what the learned model learns normal from.
                None => {
                    if let Some(learner) = &self.stages.learner
                        && self.hits.is_empty()
                    {
                        learner.observe(event, &mut out.sample);
                    }
                }
            }
        }
        if let Some(tracker) = &self.stages.tracker {
            tracker.observe(
                event,
                &mut out.behaviour,
                &mut out.detections,
                &mut out.reported,
            );
        }
        self.except(event, out, first_new);
        // Correlations count the detections of this event, so they see every deciding stage's
        // (excepted ones are gone: they count toward nothing).
        if let Some(correlation) = &self.stages.correlation
            && out.detections.len() > first_new
        {
            let before = out.detections.len();
            correlation.observe(event, &mut out.detections, first_new);
            if out.detections.len() > before {
                self.except(event, out, before);
            }
        }
        let detections = &out.detections[first_new..];
        if detections.is_empty() {
            return;
        }
        for playbook in &self.content.playbooks {
            let chosen = detections
                .iter()
                .filter(|d| playbook.trigger.matches(d))
                .reduce(|best, d| if d.severity > best.severity { d } else { best });
            let Some(detection) = chosen else { continue };
            self.plan.actions.clear();
            self.plan.degrade.clear();
            self.planner
                .plan(playbook, event, detection, self.dry_run, &mut self.plan);
            out.actions.append(&mut self.plan.actions);
            out.degrade.append(&mut self.plan.degrade);
        }
    }
}

impl Pipeline {
    /// Drops the detections from `from` on that an exception covers, noting each in `out`.
    fn except(&self, event: &Event, out: &mut Outcome, from: usize) {
        let exceptions = &self.content.exceptions;
        if exceptions.is_empty() || out.detections.len() <= from {
            return;
        }
        let now = jiff::Timestamp::now();
        let mut index = from;
        while index < out.detections.len() {
            match exceptions.covering(&out.detections[index].rule, event, now) {
                Some(exception) => {
                    let detection = out.detections.remove(index);
                    out.excepted.push(Excepted {
                        rule: detection.rule,
                        event_id: event.id.clone(),
                        exception: exception.clone(),
                    });
                }
                None => index += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::event::EventKind;
    use crate::sigma::correlation;

    /// An event time, in milliseconds since the epoch (2025-11-30).
    const T0: i64 = 1_764_500_000_000;

    /// From one Sigma file (a base rule and a correlation over it, as SigmaHQ's multi-document
    /// files hold them) through the loader, the content and the pipeline's own Sigma stage.
    #[test]
    fn a_sigma_file_with_a_rule_and_its_correlation_runs_in_the_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        let file = "\
title: Whoami run
id: 3d3b7e55-3f4e-4b8e-9a7c-0b6f0c9d1a21
name: whoami
status: test
level: low
logsource:
  category: process_creation
  product: windows
detection:
  selection:
    Image|endswith: '\\whoami.exe'
  condition: selection
---
title: Whoami run three times on one host
id: whoami-burst
level: high
author: palisade tests
correlation:
  type: event_count
  rules: [whoami]
  group-by: [Computer]
  timespan: 1m
  condition:
    gte: 3
";
        std::fs::write(dir.path().join("rules/whoami.yml"), file).unwrap();
        let content = Arc::new(crate::content::load(dir.path(), None).unwrap());
        let raw = crate::sigma::parse::parse_file(
            Path::new("rules/whoami.yml"),
            file,
            &content.config.sigma,
        );
        let raw: Vec<crate::sigma::RawCorrelation> = raw
            .documents
            .into_iter()
            .filter_map(|d| match d {
                crate::sigma::parse::Document::Correlation(raw) => Some(*raw),
                _ => None,
            })
            .collect();
        let correlations = correlation::load(
            &raw,
            &content.sigma.rules,
            &content.config.sigma.correlation,
        )
        .unwrap();
        let stages = Stages {
            correlation: Some(CorrelationHandle::new(
                correlations,
                correlation::Limits::from_config(&content.config.sigma.correlation),
            )),
            ..Stages::from_content(&content).unwrap()
        };
        let mut pipeline =
            Pipeline::with_stages(content.clone(), false, IntelHandle::default(), stages).unwrap();
        let mut fired = Vec::new();
        for i in 0..5 {
            let mut event = Event::new(format!("p{i}"), EventKind::ProcessCreate, T0 + i * 1_000);
            event.host = Some("ws-7".into());
            event.image = Some("C:\\Windows\\System32\\whoami.exe".into());
            event.name = Some("whoami.exe".into());
            let mut outcome = Outcome::default();
            pipeline.process(&event, &mut outcome);
            fired.extend(
                outcome
                    .detections
                    .into_iter()
                    .map(|d| (d.event_id, d.rule.to_string())),
            );
        }
        // The base rule's own detections are replaced by the correlation's (no `generate`); the
        // third run fires, the next two are in the window that fired.
        assert_eq!(fired, [("p2".to_string(), "whoami-burst".to_string())]);
    }
}
