//! The per-worker rule evaluator.

use std::sync::Arc;

use rhai::{AST, CallFnOptions, Dynamic, Engine, Scope};

use crate::detection::Detection;
use crate::event::{Event, EventKind};

use super::convert::{detection_from, event_to_dynamic};
use super::sandbox::{DataSize, Deadline, build_engine, describe, fit_limits_to};
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
        for &index in &self.by_kind[event.kind.index()] {
            let rule = &self.rules[index];
            let definition = &rule.definition;
            if !definition.prefilter.matches(event, intel) {
                continue;
            }
            let Some(ast) = &rule.ast else {
                if let Ok(Some(detection)) = detection_from(Dynamic::TRUE, definition, event) {
                    detections.push(detection);
                }
                continue;
            };
            let argument = match &event_value {
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
            let outcome = match result {
                Ok(value) => detection_from(value, definition, event),
                Err(err) => Err(describe(&err)),
            };
            match outcome {
                Ok(Some(detection)) => detections.push(detection),
                Ok(None) => {}
                Err(message) => failures.push(RuleFailure {
                    rule: definition.id.clone(),
                    event_id: event.id.clone(),
                    message,
                }),
            }
        }
    }
}
