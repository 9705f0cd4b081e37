//! One worker's path for an event: rules decide, playbooks plan.
//!
//! ```text
//! Event ──► RuleEngine (indexed by type, pre-filtered) ──► detections ──► Planner ──► actions
//! ```
//!
//! Later stages slot in between: intel enrichment before the rules, the anomaly model and the
//! behaviour tracker after them for events no rule matched, and the executor after planning.
//! Each worker owns one [`Pipeline`]; the [`Content`] it was built from is shared and immutable,
//! so a reload builds new pipelines off to the side and swaps them in.

use std::sync::Arc;

use crate::actions::ActionRecord;
use crate::content::Content;
use crate::detection::Detection;
use crate::event::Event;
use crate::intel::{IntelHandle, IntelHit};
use crate::playbooks::{PlanOutcome, Planner};
use crate::rules::{RuleEngine, RuleFailure};

/// Everything one event produced. Reused across events to avoid allocating per event.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    pub detections: Vec<Detection>,
    pub actions: Vec<ActionRecord>,
    pub failures: Vec<RuleFailure>,
    /// Reasons a step asked the engine to switch to manual mode.
    pub degrade: Vec<String>,
}

impl Outcome {
    pub fn clear(&mut self) {
        self.detections.clear();
        self.actions.clear();
        self.failures.clear();
        self.degrade.clear();
    }
}

pub struct Pipeline {
    content: Arc<Content>,
    intel: IntelHandle,
    hits: Vec<IntelHit>,
    rules: RuleEngine,
    planner: Planner,
    dry_run: bool,
    plan: PlanOutcome,
}

impl Pipeline {
    /// Builds a worker's pipeline. `dry_run` overrides nothing when false: shadow playbooks still
    /// only report.
    pub fn new(
        content: Arc<Content>,
        dry_run: bool,
        intel: IntelHandle,
    ) -> Result<Pipeline, String> {
        let rules = RuleEngine::build(&content.rules, &content.config.limits, &intel)?;
        let planner = Planner::new(&content.config.limits, &intel);
        Ok(Pipeline {
            content,
            intel,
            hits: Vec::new(),
            rules,
            planner,
            dry_run,
            plan: PlanOutcome::default(),
        })
    }

    pub fn content(&self) -> &Arc<Content> {
        &self.content
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
