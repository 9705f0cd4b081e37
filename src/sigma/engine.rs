//! One worker's Sigma stage: the loaded rules indexed by event kind, turning matches into
//! detections.

use std::sync::Arc;

use crate::detection::{Attribution, Detection, Severity, Stage};
use crate::event::{Event, EventKind};

use super::ast::{Level, SigmaRule};

/// What a rule's detections carry, built once per rule rather than once per detection.
struct Prepared {
    rule: Arc<SigmaRule>,
    severity: Severity,
    tags: Arc<[String]>,
    attribution: Option<Arc<Attribution>>,
}

/// The Sigma rules of one worker. Not shared between threads.
pub struct SigmaEngine {
    rules: Vec<Prepared>,
    /// For each [`EventKind`] (by [`EventKind::index`]), the rules that apply to it.
    by_kind: [Vec<usize>; 4],
}

/// A Sigma level as palisade's severity: the two scales have the same five steps.
pub fn severity(level: Level) -> Severity {
    match level {
        Level::Informational => Severity::Informational,
        Level::Low => Severity::Low,
        Level::Medium => Severity::Medium,
        Level::High => Severity::High,
        Level::Critical => Severity::Critical,
    }
}

impl SigmaEngine {
    pub fn build(rules: &[Arc<SigmaRule>]) -> SigmaEngine {
        let mut by_kind: [Vec<usize>; 4] = Default::default();
        let mut prepared = Vec::with_capacity(rules.len());
        for rule in rules {
            for kind in &rule.kinds {
                by_kind[kind.index()].push(prepared.len());
            }
            let attribution = (rule.author.is_some() || !rule.references.is_empty()).then(|| {
                Arc::new(Attribution {
                    author: rule.author.clone(),
                    references: rule.references.clone(),
                })
            });
            prepared.push(Prepared {
                rule: rule.clone(),
                severity: severity(rule.level),
                tags: Arc::from(rule.tags.clone()),
                attribution,
            });
        }
        SigmaEngine {
            rules: prepared,
            by_kind,
        }
    }

    /// How many Sigma rules apply to events of `kind`.
    pub fn rules_for(&self, kind: EventKind) -> usize {
        self.by_kind[kind.index()].len()
    }

    /// Appends one detection per Sigma rule that matches `event`.
    pub fn evaluate(&mut self, event: &Event, detections: &mut Vec<Detection>) {
        for &index in &self.by_kind[event.kind.index()] {
            let prepared = &self.rules[index];
            if super::eval::matches(&prepared.rule, event) {
                detections.push(Detection {
                    event_id: event.id.clone(),
                    rule: prepared.rule.id.clone(),
                    stage: Stage::Rule,
                    severity: prepared.severity,
                    title: prepared.rule.title.clone(),
                    tags: prepared.tags.clone(),
                    entity: None,
                    score: None,
                    intel: Vec::new(),
                    attribution: prepared.attribution.clone(),
                });
            }
        }
    }
}
