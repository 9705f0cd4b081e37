//! Why an event did or did not match: the same stages as [`Pipeline::process`], each asked to
//! report what decided instead of only deciding. Plain data; `palisade explain` and
//! `palisade replay --explain` render it, and `palisade test` quotes it for a case that failed.
//!
//! Every verdict here comes from the code the pipeline runs (the rule filter's own conditions,
//! the rule engine's call of `detect`, the compiled Sigma set and its gate, the trigger's test,
//! the planner), never from a second evaluator, so what it says is what the engine did.

use serde::Serialize;

use crate::actions::ActionStatus;
use crate::detection::Detection;
use crate::event::Event;
use crate::intel::IntelHit;
use crate::playbooks::{WHEN_FAILED, WHEN_FALSE};
use crate::rules::RuleReport;
use crate::sigma::SigmaRuleReport;

use super::{Outcome, Pipeline};

/// Everything that decided one event's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The event as the intake normalized it.
    pub event: serde_json::Value,
    /// Threat-intelligence hits of the event's values.
    pub intel: Vec<IntelHit>,
    /// Every Rhai rule for the event's kind, in load order.
    pub rules: Vec<RuleReport>,
    /// How many Rhai rules are for other event kinds.
    pub other_rules: usize,
    /// Every Sigma rule for the event's kind.
    pub sigma: Vec<SigmaRuleReport>,
    /// How many Sigma rules are for other event kinds.
    pub other_sigma: usize,
    pub anomaly: AnomalyView,
    pub tracker: TrackerView,
    /// What every stage decided, in the order the pipeline produced it.
    pub detections: Vec<Detection>,
    /// Rules that failed on the event (skipped for it).
    pub failures: Vec<FailureView>,
    /// Every playbook: whether its trigger matched a detection and its steps as planned.
    pub playbooks: Vec<PlaybookView>,
    /// Whether steps were planned as dry-run (nothing is ever executed by an explanation).
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureView {
    pub rule: String,
    pub message: String,
}

/// The anomaly stage on one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum AnomalyView {
    /// The stage did not score the event, and why.
    NotScored { reason: String },
    /// The model's score with every feature's value and share of the distance (what
    /// `palisade model explain` prints).
    Scored {
        score: f64,
        threshold: f64,
        distance: f64,
        flagged: bool,
        features: Vec<FeatureShare>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureShare {
    pub name: &'static str,
    pub value: f64,
    /// Share of the distance from the nearest centre, 0–1.
    pub share: f64,
}

/// What the behaviour tracker could say about the event's host before this event, through the
/// same queries rules call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackerView {
    /// Whether the tracker holds any record of the entity (host, or user for a login).
    pub tracked: bool,
    /// Why there is nothing to say (tracker off, event it does not record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The entity the tracker files the event under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// Records of the event's behaviour kind for the entity within retention.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<(String, i64)>,
    /// For a process start: `parent>child` and whether `first_seen` calls it new.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<(String, bool)>,
    /// For a connection: distinct ports tried on the address, and the beacon interval in
    /// seconds when the connections are regular.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_ports: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beacon_interval_s: Option<f64>,
}

/// One playbook on one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaybookView {
    pub playbook: String,
    pub title: String,
    /// The detection the playbook ran for (the most severe its trigger matched), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triggered_by: Option<String>,
    /// Each detection of the event and why the trigger did not match it (`None`: it did).
    pub trigger: Vec<(String, Option<&'static str>)>,
    /// The steps as planned for `triggered_by` (empty when the trigger matched nothing).
    pub steps: Vec<StepView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepView {
    pub step: String,
    pub action: &'static str,
    /// The outcome of the step's `when`: `none` (the step has none), `true`, `false`,
    /// `error`, or `not evaluated` (an earlier step stopped the playbook).
    pub when: &'static str,
    pub status: ActionStatus,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Pipeline {
    /// Runs `event` through every stage as [`Pipeline::process`] does, appending the same
    /// outcome to `out`, and reports what decided at each stage. Nothing is executed (the
    /// pipeline only plans) and nothing is stored (the caller holds the outcome).
    pub fn explain(&mut self, event: &Event, out: &mut Outcome) -> Explanation {
        let first_new = out.detections.len();
        let first_failure = out.failures.len();
        self.hits.clear();
        self.intel.current().enrich(event, &mut self.hits);
        let rules = self
            .rules
            .explain(event, &self.hits, &mut out.detections, &mut out.failures);
        let other_rules = self
            .content
            .rules
            .len()
            .saturating_sub(self.rules.rules_for(event.kind));
        let sigma = self.sigma.explain(event, &mut out.detections);
        let other_sigma = self
            .content
            .sigma
            .rules
            .len()
            .saturating_sub(self.sigma.rules_for(event.kind));
        let anomaly = self.explain_anomaly(event, out, first_new);
        let tracker = self.tracker_view(event);
        if let Some(tracker) = &self.stages.tracker {
            tracker.observe(
                event,
                &mut out.behaviour,
                &mut out.detections,
                &mut out.reported,
            );
        }
        if let Some(correlation) = &self.stages.correlation
            && out.detections.len() > first_new
        {
            correlation.observe(event, &mut out.detections, first_new);
        }
        let detections = out.detections[first_new..].to_vec();
        let mut playbooks = Vec::new();
        for playbook in &self.content.playbooks {
            let trigger: Vec<(String, Option<&'static str>)> = detections
                .iter()
                .map(|d| (d.rule.to_string(), playbook.trigger.mismatch(d)))
                .collect();
            // The same choice as `process`: the most severe matching detection, first of equals.
            let chosen = detections
                .iter()
                .filter(|d| playbook.trigger.matches(d))
                .reduce(|best, d| if d.severity > best.severity { d } else { best });
            let mut view = PlaybookView {
                playbook: playbook.id.to_string(),
                title: playbook.title.clone(),
                triggered_by: chosen.map(|d| d.rule.to_string()),
                trigger,
                steps: Vec::new(),
            };
            if let Some(detection) = chosen {
                self.plan.actions.clear();
                self.plan.degrade.clear();
                self.planner
                    .plan(playbook, event, detection, self.dry_run, &mut self.plan);
                for (step, record) in playbook.steps.iter().zip(&self.plan.actions) {
                    view.steps.push(StepView {
                        step: record.step.clone(),
                        action: record.action,
                        when: when_outcome(step.when.is_some(), record),
                        status: record.status,
                        target: record.target.clone(),
                        reason: record.reason.clone(),
                    });
                }
                out.actions.append(&mut self.plan.actions);
                out.degrade.append(&mut self.plan.degrade);
            }
            playbooks.push(view);
        }
        Explanation {
            event: serde_json::to_value(event).unwrap_or(serde_json::Value::Null),
            intel: self.hits.clone(),
            rules,
            other_rules,
            sigma,
            other_sigma,
            anomaly,
            tracker,
            detections,
            failures: out.failures[first_failure..]
                .iter()
                .map(|f| FailureView {
                    rule: f.rule.to_string(),
                    message: f.message.clone(),
                })
                .collect(),
            playbooks,
            dry_run: self.dry_run,
        }
    }

    /// The anomaly stage as `process` runs it (scored only when no rule matched), with the
    /// model's explanation of the score.
    fn explain_anomaly(
        &mut self,
        event: &Event,
        out: &mut Outcome,
        first_new: usize,
    ) -> AnomalyView {
        if out.detections.len() > first_new {
            return AnomalyView::NotScored {
                reason: "a rule matched, so the model does not score the event".into(),
            };
        }
        let Some(model) = self.stages.anomaly.current() else {
            return AnomalyView::NotScored {
                reason: "no anomaly model is in use".into(),
            };
        };
        let detection = self.stages.anomaly.detect(event, &mut self.features);
        let flagged = detection.is_some();
        if let Some(detection) = detection {
            out.detections.push(detection);
        } else if let Some(learner) = &self.stages.learner
            && self.hits.is_empty()
        {
            learner.observe(event, &mut out.sample);
        }
        match model.explain(event) {
            Some(explained) => AnomalyView::Scored {
                score: explained.score,
                threshold: self.stages.anomaly.threshold(),
                distance: explained.distance,
                flagged,
                features: explained
                    .features
                    .iter()
                    .map(|(name, value, share)| FeatureShare {
                        name,
                        value: *value,
                        share: *share,
                    })
                    .collect(),
            },
            None => AnomalyView::NotScored {
                reason: format!(
                    "the model does not model {} events (its baseline had too few of them)",
                    event.kind
                ),
            },
        }
    }

    /// What the tracker's query functions say about the event's entity before the event.
    fn tracker_view(&self, event: &Event) -> TrackerView {
        let mut view = TrackerView {
            tracked: false,
            reason: None,
            entity: None,
            records: None,
            first_seen: None,
            distinct_ports: None,
            beacon_interval_s: None,
        };
        let Some(tracker) = &self.stages.tracker else {
            view.reason = Some("the behaviour tracker is off".into());
            return view;
        };
        let Some(record) = crate::tracker::record_of(event) else {
            view.reason = Some("the tracker keeps no record of this event".into());
            return view;
        };
        let count = tracker.behaviour_count(&record.entity, record.kind);
        view.tracked = count > 0;
        if !view.tracked {
            view.reason = Some(format!(
                "not tracked: no {} record of `{}` within retention",
                record.kind, record.entity
            ));
        }
        view.records = Some((record.kind.to_string(), count));
        if let Some(host) = event.host.as_deref() {
            match event.kind {
                crate::event::EventKind::ProcessCreate => {
                    if let (Some(parent), Some(child)) =
                        (event.parent_name.as_deref(), event.name.as_deref())
                    {
                        view.first_seen = Some((
                            format!("{parent}>{child}"),
                            tracker.first_seen(host, parent, child),
                        ));
                    }
                }
                crate::event::EventKind::NetworkConnection => {
                    if let Some(ip) = event.remote_ip {
                        let address = ip.to_string();
                        view.distinct_ports = Some(tracker.distinct_ports(host, &address));
                        view.beacon_interval_s = tracker.beacon_interval(
                            host,
                            &address,
                            i64::from(event.remote_port.unwrap_or(0)),
                        );
                    }
                }
                _ => {}
            }
        }
        view.entity = Some(record.entity);
        view
    }
}

/// What a step's `when` gave, read from the planner's record of the step: the planner says it
/// in the step's status and reason, with the reasons it names ([`WHEN_FALSE`], [`WHEN_FAILED`]).
fn when_outcome(has_when: bool, record: &crate::actions::ActionRecord) -> &'static str {
    if !has_when {
        return "none";
    }
    let reason = record.reason.as_deref().unwrap_or("");
    match record.status {
        ActionStatus::Skipped if reason == WHEN_FALSE => "false",
        // Skipped for another reason: an earlier step stopped the playbook before this one.
        ActionStatus::Skipped => "not evaluated",
        ActionStatus::Failed if reason.starts_with(WHEN_FAILED) => "error",
        _ => "true",
    }
}
