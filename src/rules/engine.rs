//! The per-worker rule evaluator.

use std::sync::Arc;

use rhai::{AST, CallFnOptions, Dynamic, Engine, Scope};

use crate::detection::Detection;
use crate::event::{Event, EventKind};

use super::convert::{detection_from, event_to_dynamic};
use super::prefilter::FilterReport;
use super::sandbox::{DataSize, Deadline, OutputLine, build_engine, describe, fit_limits_to};
use super::{Library, RuleDefinition, RuleLimits};

/// A rule that failed on one event: it is skipped for that event, the others still run.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFailure {
    pub rule: Arc<str>,
    pub event_id: String,
    pub message: String,
}

struct CompiledRule {
    definition: Arc<RuleDefinition>,
    /// `None` for a declarative rule, whose pre-filter is the whole condition.
    ast: Option<AST>,
}

/// One worker's compiled rules, indexed by event type. Not shared between threads.
pub struct RuleEngine {
    engine: Engine,
    deadline: Deadline,
    /// The configured limits, which [`fit_limits_to`] raises by each event's own size.
    limits: RuleLimits,
    rules: Vec<CompiledRule>,
    /// For each [`EventKind`] (by [`EventKind::index`]), the rules that apply to it, in load order.
    by_kind: [Vec<usize>; 4],
    scope: Scope<'static>,
}

/// A rule that compiled when it was loaded and no longer does (its source changed underneath).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule `{rule}` no longer compiles: {message}")]
pub struct RuleCompileError {
    pub rule: String,
    pub message: String,
}

impl RuleEngine {
    /// Compiles every rule for this worker. The definitions were validated when loaded, so a
    /// compile error here means the source changed underneath and is reported as such.
    pub fn build(
        definitions: &[Arc<RuleDefinition>],
        limits: &RuleLimits,
        intel: &crate::intel::IntelHandle,
    ) -> Result<RuleEngine, RuleCompileError> {
        RuleEngine::build_with(definitions, limits, intel, None)
    }

    /// As [`RuleEngine::build`], with the tracker rules query through `first_seen` and friends
    /// (without one, those functions answer from an empty tracker).
    pub fn build_with(
        definitions: &[Arc<RuleDefinition>],
        limits: &RuleLimits,
        intel: &crate::intel::IntelHandle,
        tracker: Option<&crate::tracker::TrackerHandle>,
    ) -> Result<RuleEngine, RuleCompileError> {
        RuleEngine::build_in(definitions, limits, intel, tracker, &Library::default())
    }

    /// As [`RuleEngine::build_with`], with the content's lists (`in_list`) and the helper
    /// functions of `lib/` added to every rule.
    pub fn build_in(
        definitions: &[Arc<RuleDefinition>],
        limits: &RuleLimits,
        intel: &crate::intel::IntelHandle,
        tracker: Option<&crate::tracker::TrackerHandle>,
        library: &Library,
    ) -> Result<RuleEngine, RuleCompileError> {
        let (mut engine, deadline) = build_engine(limits, intel);
        library.register(&mut engine, &deadline);
        if let Some(tracker) = tracker {
            // Registered again over the empty tracker's functions: the last registration wins.
            tracker.register(&mut engine);
        }
        let mut rules = Vec::with_capacity(definitions.len());
        let mut by_kind: [Vec<usize>; 4] = Default::default();
        for definition in definitions {
            let ast = if definition.has_detect {
                let ast = engine
                    .compile(&*definition.source)
                    .map_err(|err| RuleCompileError {
                        rule: definition.id.to_string(),
                        message: err.to_string(),
                    })?;
                // Keep only the functions: the top level (metadata, tests) already ran at load.
                Some(library.with_helpers(ast.clone_functions_only()))
            } else {
                None
            };
            for kind in &definition.events {
                by_kind[kind.index()].push(rules.len());
            }
            rules.push(CompiledRule {
                definition: definition.clone(),
                ast,
            });
        }
        Ok(RuleEngine {
            engine,
            deadline,
            limits: limits.clone(),
            rules,
            by_kind,
            scope: Scope::new(),
        })
    }

    /// How many rules apply to events of `kind`.
    pub fn rules_for(&self, kind: EventKind) -> usize {
        self.by_kind[kind.index()].len()
    }

    /// Runs every applicable rule on `event` (with its intel hits), appending detections and
    /// failures.
    pub fn evaluate(
        &mut self,
        event: &Event,
        intel: &[crate::intel::IntelHit],
        detections: &mut Vec<Detection>,
        failures: &mut Vec<RuleFailure>,
    ) {
        // Built once per event, and only when a script rule passes its pre-filter.
        let mut event_value: Option<Dynamic> = None;
        for position in 0..self.by_kind[event.kind.index()].len() {
            let index = self.by_kind[event.kind.index()][position];
            if !self.rules[index].definition.prefilter.matches(event, intel) {
                continue;
            }
            let outcome = match self.call_detect(index, event, intel, &mut event_value) {
                Called::Declarative(outcome) => outcome,
                Called::Script(Ok(value)) => {
                    detection_from(value, &self.rules[index].definition, event)
                }
                Called::Script(Err(message)) => Err(message),
            };
            self.record(index, event, outcome, detections, failures);
        }
    }

    /// As [`RuleEngine::evaluate`] (the same detections and failures are appended), and for
    /// each applicable rule, what decided it: every filter condition with its outcome, what
    /// `detect` returned or its error, and what it printed. For `palisade explain`.
    pub fn explain(
        &mut self,
        event: &Event,
        intel: &[crate::intel::IntelHit],
        detections: &mut Vec<Detection>,
        failures: &mut Vec<RuleFailure>,
    ) -> Vec<RuleReport> {
        self.deadline.capture();
        let mut reports = Vec::new();
        let mut event_value: Option<Dynamic> = None;
        for position in 0..self.by_kind[event.kind.index()].len() {
            let index = self.by_kind[event.kind.index()][position];
            let definition = self.rules[index].definition.clone();
            // The filter's own verdict decides, as in `evaluate`; the report only shows it.
            let passed = definition.prefilter.matches(event, intel);
            let filter = definition.prefilter.report(event, intel);
            let mut report = RuleReport {
                rule: definition.id.clone(),
                title: definition.title.clone(),
                file: definition.path.display().to_string(),
                filter,
                detect: DetectReport::NotRun,
                output: Vec::new(),
                more_output: 0,
            };
            if passed {
                let called = self.call_detect(index, event, intel, &mut event_value);
                let (shown, outcome) = match called {
                    Called::Declarative(outcome) => (DetectReport::NoScript, outcome),
                    Called::Script(Ok(value)) => {
                        let returned = if value.is_unit() {
                            "()".to_string()
                        } else {
                            value.to_string()
                        };
                        let kind = value.type_name().to_string();
                        (
                            DetectReport::Returned {
                                value: returned,
                                type_name: kind,
                                detected: false,
                            },
                            detection_from(value, &definition, event),
                        )
                    }
                    Called::Script(Err(message)) => (
                        DetectReport::Failed {
                            message: message.clone(),
                        },
                        Err(message),
                    ),
                };
                report.detect = match (shown, &outcome) {
                    (
                        DetectReport::Returned {
                            value, type_name, ..
                        },
                        Ok(found),
                    ) => DetectReport::Returned {
                        value,
                        type_name,
                        detected: found.is_some(),
                    },
                    // `detect` returned something that is not a detection (a wrong key or
                    // value): the failure the pipeline records says which.
                    (DetectReport::Returned { .. }, Err(message)) => DetectReport::Failed {
                        message: message.clone(),
                    },
                    (shown, _) => shown,
                };
                self.record(index, event, outcome, detections, failures);
                (report.output, report.more_output) = self.deadline.take_captured();
            }
            reports.push(report);
        }
        reports
    }

    /// The rule's `detect` called on `event` (the event converted once, for the first rule that
    /// needs it), or for a declarative rule its detection.
    fn call_detect(
        &mut self,
        index: usize,
        event: &Event,
        intel: &[crate::intel::IntelHit],
        event_value: &mut Option<Dynamic>,
    ) -> Called {
        let rule = &self.rules[index];
        let definition = &rule.definition;
        let Some(ast) = &rule.ast else {
            return Called::Declarative(detection_from(Dynamic::TRUE, definition, event));
        };
        let argument = match event_value {
            Some(value) => value.clone(),
            None => {
                let value = event_to_dynamic(event, intel);
                // The event's own data never counts against the script size limits.
                fit_limits_to(&mut self.engine, &self.limits, DataSize::of(&value));
                event_value.insert(value).clone()
            }
        };
        self.deadline.start_rule(&definition.id);
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        let result = self.engine.call_fn_with_options::<Dynamic>(
            options,
            &mut self.scope,
            ast,
            "detect",
            (argument,),
        );
        Called::Script(result.map_err(|err| describe(&err)))
    }

    /// Appends what one rule decided. A declarative rule whose detection cannot be built is
    /// skipped silently, as it always was (its metadata was checked at load).
    fn record(
        &self,
        index: usize,
        event: &Event,
        outcome: Result<Option<Detection>, String>,
        detections: &mut Vec<Detection>,
        failures: &mut Vec<RuleFailure>,
    ) {
        let rule = &self.rules[index];
        match outcome {
            Ok(Some(detection)) => detections.push(detection),
            Ok(None) => {}
            Err(_) if rule.ast.is_none() => {}
            Err(message) => failures.push(RuleFailure {
                rule: rule.definition.id.clone(),
                event_id: event.id.clone(),
                message,
            }),
        }
    }
}

/// What calling a rule gave.
enum Called {
    /// A rule without `detect`: its filter is the whole condition.
    Declarative(Result<Option<Detection>, String>),
    /// What `detect` returned, or why it failed.
    Script(Result<Dynamic, String>),
}

/// One rule on one event, for `palisade explain`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RuleReport {
    pub rule: Arc<str>,
    pub title: String,
    pub file: String,
    pub filter: FilterReport,
    pub detect: DetectReport,
    /// What the rule printed (`print`, `debug`) on this event.
    pub output: Vec<OutputLine>,
    /// Lines past [`super::CAPTURED_LINES`], counted.
    #[serde(skip_serializing_if = "is_zero")]
    pub more_output: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What became of a rule's `detect` on one event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum DetectReport {
    /// The filter said no, so `detect` did not run.
    NotRun,
    /// The rule has no `detect`: passing its filter is the detection.
    NoScript,
    /// `detect` returned `value` (Rhai's rendering, of type `type_name`); `detected` says
    /// whether that made a detection (`true` or a map) or not (`false`, `()`).
    Returned {
        value: String,
        type_name: String,
        detected: bool,
    },
    /// `detect` failed, or returned something that is not a detection: the rule was skipped for
    /// this event and the failure recorded.
    Failed { message: String },
}
