//! One worker's Sigma stage: the loaded rules indexed by event kind, turning matches into
//! detections.

use std::sync::Arc;

use crate::detection::{Attribution, Detection, RuleStatus, Severity, Stage};
use crate::event::{Event, EventKind};

use super::ast::{Level, SigmaRule};
use super::compiled::{CompiledSet, Scratch};

/// What a rule's detections carry, built once per rule rather than once per detection.
struct Prepared {
    rule: Arc<SigmaRule>,
    severity: Severity,
    tags: Arc<[String]>,
    attribution: Option<Arc<Attribution>>,
    status: RuleStatus,
    /// Whether `rules.statuses` runs it. The compiled set is shared by every worker and built
    /// once per load, so a rule that does not run is dropped here, after matching.
    runs: bool,
}

/// The Sigma rules of one worker: the shared compiled set and this worker's scratch space.
/// Not shared between threads.
pub struct SigmaEngine {
    rules: Vec<Prepared>,
    /// For each [`EventKind`] (by [`EventKind::index`]), how many rules apply to it.
    by_kind: [usize; 4],
    /// Built once per content load and shared by every worker; `None` without Sigma rules.
    compiled: Option<Arc<CompiledSet>>,
    scratch: Scratch,
    matched: Vec<usize>,
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
    /// A worker's stage over `rules` and the set compiled from them (in the same order); the
    /// rules whose status is not in `statuses` (the config's `rules.statuses`) never produce a
    /// detection.
    pub fn build(
        rules: &[Arc<SigmaRule>],
        compiled: Option<Arc<CompiledSet>>,
        statuses: &[RuleStatus],
    ) -> SigmaEngine {
        let mut by_kind = [0; 4];
        let mut prepared = Vec::with_capacity(rules.len());
        for rule in rules {
            let status = rule.status.unwrap_or_default();
            let runs = statuses.contains(&status);
            if runs {
                for kind in &rule.kinds {
                    by_kind[kind.index()] += 1;
                }
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
                status,
                runs,
            });
        }
        let scratch = compiled
            .as_ref()
            .map(|set| set.scratch())
            .unwrap_or_default();
        SigmaEngine {
            rules: prepared,
            by_kind,
            compiled,
            scratch,
            matched: Vec::new(),
        }
    }

    /// How many Sigma rules apply to events of `kind`.
    pub fn rules_for(&self, kind: EventKind) -> usize {
        self.by_kind[kind.index()]
    }

    /// Appends one detection per Sigma rule that matches `event`.
    pub fn evaluate(&mut self, event: &Event, detections: &mut Vec<Detection>) {
        let Some(compiled) = &self.compiled else {
            return;
        };
        compiled.matches(event, &mut self.scratch, &mut self.matched);
        for &index in &self.matched {
            if let Some(prepared) = self.rules.get(index)
                && prepared.runs
            {
                detections.push(Detection {
                    event_id: event.id.clone(),
                    rule: prepared.rule.id.clone(),
                    stage: Stage::Rule,
                    severity: prepared.severity,
                    status: prepared.status,
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

    /// As [`SigmaEngine::evaluate`] (the same detections are appended), and for each rule of
    /// the event's kind, whether it matched, whether its literal gate let the event through,
    /// and each of its searches' outcome by the evaluator that defines Sigma's meaning
    /// (`eval.rs`, which the compiled set is held to). For `palisade explain`.
    pub fn explain(
        &mut self,
        event: &Event,
        detections: &mut Vec<Detection>,
    ) -> Vec<SigmaRuleReport> {
        let first = detections.len();
        self.evaluate(event, detections);
        let Some(compiled) = &self.compiled else {
            return Vec::new();
        };
        let matched: Vec<&str> = detections[first..].iter().map(|d| &*d.rule).collect();
        compiled
            .gates(event)
            .into_iter()
            .filter_map(|(index, gate)| {
                let rule = &self.rules.get(index)?.rule;
                Some(SigmaRuleReport {
                    rule: rule.id.clone(),
                    name: rule.stem.clone(),
                    title: rule.title.clone(),
                    file: rule.path.display().to_string(),
                    matched: matched.contains(&&*rule.id),
                    gate,
                    searches: rule
                        .searches
                        .iter()
                        .map(|search| {
                            (
                                search.name.clone(),
                                super::eval::search_matches(&search.body, event),
                            )
                        })
                        .collect(),
                })
            })
            .collect()
    }
}

/// One Sigma rule on one event, for `palisade explain`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SigmaRuleReport {
    pub rule: Arc<str>,
    /// The file's stem, which people know the rule by.
    pub name: Arc<str>,
    pub title: String,
    pub file: String,
    pub matched: bool,
    /// `Some(true)`: a literal of the rule was in the event, so its condition ran;
    /// `Some(false)`: none was, so it could not match; `None`: the rule has no literal gate.
    pub gate: Option<bool>,
    /// Each search (selection, filter, keywords) of the condition and whether it matched.
    pub searches: Vec<(String, bool)>,
}
