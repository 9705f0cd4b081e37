//! Rules: Rhai scripts in `rules/*.rhai` that decide whether an event is a detection.
//!
//! A rule file defines `let rule = #{ ... }` (its metadata and optional declarative `filter`
//! pre-filter), optionally `fn detect(event)`, and optionally `let tests = [ ... ]`. The contract
//! is written for authors in `docs/rules.md`.
//!
//! Loading ([`load_rule`]) compiles the file once in the sandbox, runs its top level to read the
//! metadata, and validates it, collecting every problem. Evaluation happens in a per-worker
//! [`RuleEngine`], which compiles its own copy of each script: sharing one engine and AST across
//! threads measured slower than one per thread.

mod convert;
mod engine;
mod failures;
pub mod helpers;
mod prefilter;
pub mod references;
mod sandbox;

pub use convert::{event_to_dynamic, hits_to_dynamic, is_event_map_key};
pub use engine::{DetectReport, RuleCompileError, RuleEngine, RuleFailure, RuleReport};
pub use failures::{FAILURE_REPORT_EVERY, FailureLog};
pub use prefilter::{Condition, ConditionReport, FilterReport, IntelReport, Operator, Prefilter};
pub use sandbox::{
    CAPTURED_LINES, DataSize, Deadline, OutputLine, PRINT_LINE_MAX, PRINT_LINES_PER_WINDOW,
    PRINT_WINDOW, RuleLimits, build_engine, describe, fit_limits_to,
};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{Dynamic, Map, Scope};

use crate::cases::{Expectation, TestCase, TestInput};
use crate::detection::Severity;
use crate::diagnostics::{Diagnostic, Diagnostics, Position};
use crate::event::EventKind;

/// A validated rule: its metadata, pre-filter, test cases and source, ready for workers to
/// compile.
#[derive(Debug, Clone)]
pub struct RuleDefinition {
    /// The file, relative to the content directory.
    pub path: PathBuf,
    pub source: Arc<str>,
    pub id: Arc<str>,
    pub title: String,
    pub description: Option<String>,
    pub severity: Severity,
    pub tags: Arc<[String]>,
    pub events: Vec<EventKind>,
    pub prefilter: Prefilter,
    /// Whether the file defines `detect(event)`; without it, passing the pre-filter is the
    /// detection.
    pub has_detect: bool,
    pub tests: Vec<TestCase>,
    /// Where `let rule` is, for diagnostics about the rule as a whole.
    pub position: Position,
    /// Reads of `event` fields the event model does not type (`event.comdline`): loading
    /// checks them against the config's `events.extra_fields` and warns about the rest.
    pub extra_reads: Vec<references::FieldRead>,
    /// Problems that do not stop the rule from loading: reads in `detect` of a typed field that
    /// none of the rule's event types carry (it reads `()` on every event the rule sees).
    pub warnings: Diagnostics,
}

/// The keys a rule's metadata map may have.
const RULE_KEYS: [&str; 7] = [
    "id",
    "title",
    "description",
    "severity",
    "tags",
    "events",
    "filter",
];

/// The event types a rule's `events` may name.
const EVENT_TYPES: [&str; 4] = ["process_create", "network_connection", "dns_query", "login"];

/// The keys a test case map may have.
const TEST_KEYS: [&str; 7] = [
    "name", "event", "events", "fixture", "expect", "intel", "anomaly",
];

/// Compiles and validates one rule file. `path` is how diagnostics name the file.
pub fn load_rule(
    path: &Path,
    source: &str,
    limits: &RuleLimits,
) -> Result<RuleDefinition, Diagnostics> {
    // Editors on Windows may save a byte-order mark, which Rhai would read as a stray character.
    let source = crate::diagnostics::strip_bom(source);
    let mut problems = Diagnostics::default();
    let (engine, deadline) = build_engine(limits, &crate::intel::IntelHandle::default());
    let ast = match engine.compile(source) {
        Ok(ast) => ast,
        Err(err) => {
            problems.push(Diagnostic::at(
                path,
                source,
                rhai_position(err.position()),
                "rhai-syntax",
                format!("syntax error: {}", err.err_type()),
            ));
            return Err(problems);
        }
    };
    let mut has_detect = false;
    // The name `detect` gives the event, read as `event` too (the name every example uses).
    let mut event_names = vec!["event".to_string()];
    for function in ast.iter_functions() {
        if function.name == "detect" {
            if function.params.len() == 1 {
                has_detect = true;
                if let Some(name) = function.params.first()
                    && *name != "event"
                {
                    event_names.push(name.to_string());
                }
            } else {
                problems.push(Diagnostic::at(
                    path,
                    source,
                    text_position(source, 0, "fn detect"),
                    "rule-detect-signature",
                    format!(
                        "`detect` must take exactly one parameter (the event), it takes {}",
                        function.params.len()
                    ),
                ));
            }
        }
    }
    // The top level only builds the metadata and test maps; it runs once, here, in the sandbox.
    let mut scope = Scope::new();
    deadline.start();
    if let Err(err) = engine.run_ast_with_scope(&mut scope, &ast) {
        problems.push(Diagnostic::at(
            path,
            source,
            rhai_position(err.position()),
            "rhai-runtime",
            format!("the rule's top level failed: {}", describe(&err)),
        ));
        return Err(problems);
    }
    let rule_offset = source.find("let rule").unwrap_or(0);
    let position = text_position(source, 0, "let rule");
    let Some(meta) = scope.get_value::<Map>("rule") else {
        problems.push(Diagnostic::at(
            path,
            source,
            Position::START,
            "rule-missing-metadata",
            "a rule file must define its metadata as `let rule = #{ id: ..., title: ..., severity: ..., events: [...] };`",
        ));
        return Err(problems);
    };
    let mut at_key = |key: &str, code: &'static str, message: String| {
        problems.push(Diagnostic::at(
            path,
            source,
            text_position(source, rule_offset, key),
            code,
            message,
        ));
    };

    for key in meta.keys() {
        if !RULE_KEYS.contains(&key.as_str()) {
            let hint = crate::diagnostics::did_you_mean(key, RULE_KEYS);
            at_key(
                key,
                "rule-unknown-key",
                format!(
                    "unknown key `{key}` in `rule`{hint}; keys: {}",
                    RULE_KEYS.join(", ")
                ),
            );
        }
    }
    let text = |key: &str| meta.get(key).and_then(|v| v.clone().into_string().ok());
    let id = match text("id") {
        Some(id) if is_valid_id(&id) => id,
        Some(id) => {
            at_key(
                "id",
                "rule-bad-id",
                format!("rule id `{id}` must be lowercase letters, digits, `-`, `_` or `.`"),
            );
            id
        }
        None => {
            at_key(
                "rule",
                "rule-missing-key",
                "`rule` needs an `id` (a string)".into(),
            );
            String::new()
        }
    };
    let title = text("title").unwrap_or_else(|| {
        at_key(
            "rule",
            "rule-missing-key",
            "`rule` needs a `title` (a string)".into(),
        );
        String::new()
    });
    let severity = match text("severity") {
        Some(name) => Severity::parse(&name).unwrap_or_else(|| {
            at_key(
                "severity",
                "rule-bad-severity",
                format!(
                    "unknown severity `{name}`{}; use one of {}",
                    crate::diagnostics::did_you_mean(&name, Severity::NAMES.split(", ")),
                    Severity::NAMES
                ),
            );
            Severity::Informational
        }),
        None => {
            at_key(
                "rule",
                "rule-missing-key",
                format!("`rule` needs a `severity`: one of {}", Severity::NAMES),
            );
            Severity::Informational
        }
    };
    let tags = match meta.get("tags") {
        None => Vec::new(),
        Some(value) => string_list(value).unwrap_or_else(|| {
            at_key(
                "tags",
                "rule-bad-tags",
                "`tags` must be an array of strings".into(),
            );
            Vec::new()
        }),
    };
    let events = match meta.get("events").map(string_list) {
        Some(Some(names)) if !names.is_empty() => {
            let mut kinds = Vec::new();
            for name in names {
                match EventKind::parse(&name) {
                    Some(kind) if !kinds.contains(&kind) => kinds.push(kind),
                    Some(_) => {}
                    None => at_key(
                        "events",
                        "rule-unknown-event-type",
                        format!(
                            "unknown event type `{name}`{}; types: {}",
                            crate::diagnostics::did_you_mean(&name, EVENT_TYPES),
                            EVENT_TYPES.join(", ")
                        ),
                    ),
                }
            }
            kinds
        }
        _ => {
            at_key(
                "events",
                "rule-missing-key",
                "`rule` needs `events`: a non-empty array of event types it applies to".into(),
            );
            Vec::new()
        }
    };
    let mut conditions_found = Vec::new();
    let mut intel_kinds: Option<Vec<crate::intel::IndicatorKind>> = None;
    match meta.get("filter") {
        None => {}
        Some(value) => match value.clone().try_cast::<Map>() {
            None => at_key(
                "filter",
                "rule-bad-filter",
                "`filter` must be an object map of field to values".into(),
            ),
            Some(conditions) => {
                for (key, values) in conditions {
                    if key == "intel" {
                        match scalar_list(&values)
                            .ok_or_else(|| {
                                "`filter` key `intel` takes `any` or a list of indicator kinds"
                                    .to_string()
                            })
                            .and_then(|v| Prefilter::parse_intel(&v))
                        {
                            Ok(kinds) => intel_kinds = Some(kinds),
                            Err(message) => at_key("intel", "rule-bad-filter", message),
                        }
                        continue;
                    }
                    let parsed = scalar_list(&values)
                        .ok_or_else(|| format!("`filter` key `{key}` must have a string, a number or an array of them"))
                        .and_then(|values| Prefilter::parse_condition(&key, values));
                    match parsed {
                        Ok(condition) => {
                            if let Some(kinds) = condition.field.kinds()
                                && let Some(kind) = events.iter().find(|k| !kinds.contains(k))
                            {
                                at_key(
                                    &key,
                                    "rule-field-never-set",
                                    format!(
                                        "`filter` on `{}`, which `{kind}` events never carry, so the rule could not fire for them",
                                        condition.field
                                    ),
                                );
                            }
                            conditions_found.push(condition);
                        }
                        Err(message) => at_key(&key, "rule-bad-filter", message),
                    }
                }
            }
        },
    }
    let mut prefilter = Prefilter::new(conditions_found);
    if let Some(kinds) = intel_kinds {
        prefilter = prefilter.with_intel(kinds);
    }
    if !has_detect && prefilter.is_empty() {
        at_key(
            "rule",
            "rule-matches-everything",
            "the rule has neither `fn detect(event)` nor a `filter` pre-filter, so it would fire on every event".into(),
        );
    }
    let names: Vec<&str> = event_names.iter().map(String::as_str).collect();
    let mut extra_reads = Vec::new();
    let mut warnings = Diagnostics::default();
    for read in references::reads(source, &names) {
        let Some(first) = read.segments.first() else {
            continue;
        };
        let position = text_position(source, first.offset, "");
        match crate::event::Field::parse(&first.name) {
            // Only when no type the rule reads carries it: a rule for two types may read a
            // field of one behind a check of `event.type`.
            Some(field) => {
                if let Some(kinds) = field.kinds()
                    && !events.is_empty()
                    && !events.iter().any(|kind| kinds.contains(kind))
                {
                    warnings.push(
                        Diagnostic::at(
                            path,
                            source,
                            position,
                            "rule-field-never-set",
                            format!(
                                "`event.{field}` is never set on {} events, so it reads `()` on every event this rule sees",
                                events
                                    .iter()
                                    .map(|k| format!("`{k}`"))
                                    .collect::<Vec<_>>()
                                    .join(" or ")
                            ),
                        )
                        .with_context(format!("rule `{id}`"))
                        .warning(),
                    );
                }
            }
            None if is_event_map_key(&first.name) => {}
            None => extra_reads.push(references::FieldRead {
                position,
                path: read.segments.into_iter().map(|s| s.name).collect(),
            }),
        }
    }
    let tests = match scope.get_value::<Dynamic>("tests") {
        None => Vec::new(),
        Some(value) => parse_tests(path, source, value, &mut problems),
    };
    if !problems.is_empty() {
        let context = format!("rule `{id}`");
        let mut with_context = Diagnostics::default();
        for d in problems {
            with_context.push(d.with_context(context.clone()));
        }
        return Err(with_context);
    }
    Ok(RuleDefinition {
        path: path.to_path_buf(),
        source: Arc::from(source),
        id: Arc::from(id),
        title,
        description: text("description"),
        severity,
        tags: Arc::from(tags),
        events,
        prefilter,
        has_detect,
        tests,
        position,
        extra_reads,
        warnings,
    })
}

/// Rule ids name rules in playbooks and output, so they are kept to a safe, stable alphabet.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

fn string_list(value: &Dynamic) -> Option<Vec<String>> {
    let array = value.clone().try_cast::<rhai::Array>()?;
    array
        .into_iter()
        .map(|item| item.into_string().ok())
        .collect()
}

/// A `filter` value: one string or number, or an array of them, as text.
fn scalar_list(value: &Dynamic) -> Option<Vec<String>> {
    let scalar = |item: &Dynamic| -> Option<String> {
        if let Ok(n) = item.as_int() {
            Some(n.to_string())
        } else {
            item.clone().into_string().ok()
        }
    };
    match value.clone().try_cast::<rhai::Array>() {
        Some(array) => array.iter().map(scalar).collect(),
        None => scalar(value).map(|one| vec![one]),
    }
}

/// `let tests = [ #{ name: "...", event: #{...} | fixture: "tests/fixtures/x.jsonl", expect: ... } ]`
fn parse_tests(
    path: &Path,
    source: &str,
    value: Dynamic,
    problems: &mut Diagnostics,
) -> Vec<TestCase> {
    let tests_offset = source.find("let tests").unwrap_or(0);
    let position = text_position(source, 0, "let tests");
    let mut report = |offset: usize, needle: &str, message: String| {
        problems.push(Diagnostic::at(
            path,
            source,
            text_position(source, offset, needle),
            "rule-bad-test",
            message,
        ));
    };
    let Some(array) = value.try_cast::<rhai::Array>() else {
        report(
            tests_offset,
            "let tests",
            "`tests` must be an array of test case maps".into(),
        );
        return Vec::new();
    };
    let mut cases = Vec::new();
    for (index, item) in array.into_iter().enumerate() {
        let Some(map) = item.try_cast::<Map>() else {
            report(
                tests_offset,
                "let tests",
                format!("test case {} must be an object map", index + 1),
            );
            continue;
        };
        let name = map
            .get("name")
            .and_then(|v| v.clone().into_string().ok())
            .unwrap_or_else(|| format!("case {}", index + 1));
        let case_offset = source[tests_offset..]
            .find(&format!("\"{name}\""))
            .map_or(tests_offset, |at| tests_offset + at);
        for key in map.keys() {
            if !TEST_KEYS.contains(&key.as_str()) {
                report(
                    case_offset,
                    key,
                    format!(
                        "unknown key `{key}` in test `{name}`{}; keys: {}",
                        crate::diagnostics::did_you_mean(key, TEST_KEYS),
                        TEST_KEYS.join(", ")
                    ),
                );
            }
        }
        let input = match (map.get("event"), map.get("events"), map.get("fixture")) {
            (Some(event), None, None) => rhai::serde::from_dynamic::<serde_json::Value>(event)
                .map(|event| TestInput::Events(vec![event]))
                .map_err(|e| format!("test `{name}`: `event` is not a JSON-like map: {e}")),
            (None, Some(events), None) => {
                rhai::serde::from_dynamic::<Vec<serde_json::Value>>(events)
                    .map(TestInput::Events)
                    .map_err(|e| format!("test `{name}`: `events` is not an array of maps: {e}"))
            }
            (None, None, Some(fixture)) => fixture
                .clone()
                .into_string()
                .map_err(|_| format!("test `{name}`: `fixture` must be a path string"))
                .and_then(|f| {
                    TestInput::fixture(PathBuf::from(f)).map_err(|e| format!("test `{name}`: {e}"))
                }),
            _ => Err(format!(
                "test `{name}` needs exactly one of `event`, `events` or `fixture`"
            )),
        };
        let expect = match map.get("expect") {
            Some(value) if value.is_bool() => {
                Ok(Expectation::fires(value.as_bool().unwrap_or(false)))
            }
            Some(value) => match value.clone().try_cast::<Map>() {
                Some(fields) => rhai::serde::from_dynamic::<
                    serde_json::Map<String, serde_json::Value>,
                >(&Dynamic::from_map(fields))
                .map(Expectation::Detection)
                .map_err(|e| format!("test `{name}`: `expect` map: {e}")),
                None => Err(format!(
                    "test `{name}`: `expect` must be true, false or a map of expected detection fields"
                )),
            },
            None => Err(format!(
                "test `{name}` needs `expect`: true, false, or a map of expected detection fields"
            )),
        };
        let intel = match map.get("intel") {
            None => Ok(Vec::new()),
            Some(value) => rhai::serde::from_dynamic::<Vec<crate::cases::TestIndicator>>(value)
                .map_err(|e| format!("test `{name}`: `intel` must be an array of #{{ value: ..., source: ..., confidence: ... }}: {e}")),
        };
        match (input, expect, intel) {
            (Ok(input), Ok(expect), Ok(intel)) => cases.push(TestCase {
                name,
                input,
                expect,
                intel,
                anomaly: map
                    .get("anomaly")
                    .and_then(|v| v.as_bool().ok())
                    .unwrap_or(false),
                file: path.to_path_buf(),
                line: text_position(source, case_offset, "")
                    .line
                    .max(position.line),
            }),
            (Err(message), _, _) | (_, Err(message), _) | (_, _, Err(message)) => {
                report(case_offset, "", message)
            }
        }
    }
    cases
}

/// The position of the first `needle` at or after byte `offset` (or of `offset` itself).
pub(crate) fn text_position(source: &str, offset: usize, needle: &str) -> Position {
    let offset = offset.min(source.len());
    let at = source[offset..]
        .find(needle)
        .map_or(offset, |found| offset + found);
    let before = &source[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Position::new(line, column)
}

fn rhai_position(position: rhai::Position) -> Position {
    Position::new(
        position.line().unwrap_or(1),
        position.position().unwrap_or(1),
    )
}

#[cfg(test)]
mod tests;
