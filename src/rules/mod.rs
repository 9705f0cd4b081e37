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
pub mod exceptions;
mod failures;
pub mod helpers;
mod library;
pub mod lifecycle;
pub mod lists;
mod prefilter;
pub mod references;
mod sandbox;

pub use convert::{event_to_dynamic, hits_to_dynamic, is_event_map_key};
pub use engine::{DetectReport, RuleCompileError, RuleEngine, RuleFailure, RuleReport};
pub use exceptions::{Exception, Exceptions, load_exceptions};
pub use failures::{FAILURE_REPORT_EVERY, FailureLog};
pub use library::{Library, load_helpers};
pub use lifecycle::{NotRun, RulesConfig};
pub use lists::{Lists, NamedList, load_list};
pub use prefilter::{
    Condition, ConditionReport, FilterReport, IntelReport, MODIFIERS, Operator, Prefilter,
};
pub use sandbox::{
    CAPTURED_LINES, DataSize, Deadline, OutputLine, PRINT_LINE_MAX, PRINT_LINES_PER_WINDOW,
    PRINT_WINDOW, RuleLimits, build_engine, describe, fit_limits_to,
};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{Dynamic, Map, Scope};

use crate::cases::{Expectation, TestCase, TestInput};
use crate::detection::{Attribution, RuleStatus, Severity};
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
    /// Where the rule is in its life (`stable` when the rule names none); carried on its
    /// detections.
    pub status: RuleStatus,
    /// `false` keeps the rule loaded and validated but never run; `disabled_reason` says why.
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub author: Option<String>,
    /// Links (http or https URLs) about what the rule detects.
    pub references: Vec<String>,
    /// Known benign causes of the rule's detections, for whoever triages them.
    pub false_positives: Vec<String>,
    /// `author` and `references` as its detections carry them, built once.
    pub attribution: Option<Arc<Attribution>>,
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
const RULE_KEYS: [&str; 13] = [
    "id",
    "title",
    "description",
    "severity",
    "tags",
    "events",
    "filter",
    "status",
    "enabled",
    "disabled_reason",
    "author",
    "references",
    "false_positives",
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
    load_rule_in(path, source, limits, &Library::default())
}

/// [`load_rule`] with the content's lists and helpers, which filters and `in_list` calls are
/// checked against.
pub fn load_rule_in(
    path: &Path,
    source: &str,
    limits: &RuleLimits,
    library: &Library,
) -> Result<RuleDefinition, Diagnostics> {
    // Editors on Windows may save a byte-order mark, which Rhai would read as a stray character.
    let source = crate::diagnostics::strip_bom(source);
    let mut problems = Diagnostics::default();
    let (engine, deadline) = build_engine(limits, &crate::intel::IntelHandle::default());
    let ast = match engine.compile(source) {
        Ok(ast) => ast,
        Err(err) => {
            // Writing to a top-level variable inside a function does not compile; say why.
            if let rhai::ParseErrorType::VariableUndefined(name) = err.err_type()
                && let Some(found) = top_level_state(source, name, rhai_position(err.position()))
            {
                problems.push(Diagnostic::at(
                    path,
                    source,
                    rhai_position(err.position()),
                    "rule-top-level-state",
                    found,
                ));
                return Err(problems);
            }
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
    shared_state_and_lists(path, source, library, &mut problems);
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
    let lifecycle = parse_lifecycle(&meta, source, rule_offset, &mut at_key);
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
    let mut filter_refused = false;
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
                        .and_then(|values| Prefilter::parse_condition_with(&key, values, &library.lists));
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
                        Err(message) => {
                            filter_refused = true;
                            at_key(&key, "rule-bad-filter", message);
                        }
                    }
                }
            }
        },
    }
    let mut prefilter = Prefilter::new(conditions_found);
    if let Some(kinds) = intel_kinds {
        prefilter = prefilter.with_intel(kinds);
    }
    // A filter refused above is already reported; "matches everything" would only repeat it.
    if !has_detect && prefilter.is_empty() && !filter_refused {
        at_key(
            "rule",
            "rule-matches-everything",
            "the rule has neither `fn detect(event)` nor a `filter` pre-filter, so it would fire on every event".into(),
        );
    }
    let names: Vec<&str> = event_names.iter().map(String::as_str).collect();
    let mut extra_reads = Vec::new();
    let mut warnings = Diagnostics::default();
    if lifecycle.enabled && lifecycle.disabled_reason.is_some() {
        warnings.push(
            Diagnostic::at(
                path,
                source,
                text_position(source, rule_offset, "disabled_reason"),
                "rule-reason-while-enabled",
                "`disabled_reason` is given but the rule is enabled: the reason is ignored",
            )
            .with_context(format!("rule `{id}`"))
            .warning(),
        );
    }
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
        attribution: (lifecycle.author.is_some() || !lifecycle.references.is_empty()).then(|| {
            Arc::new(Attribution {
                author: lifecycle.author.clone(),
                references: lifecycle.references.clone(),
            })
        }),
        status: lifecycle.status,
        enabled: lifecycle.enabled,
        disabled_reason: lifecycle.disabled_reason,
        author: lifecycle.author,
        references: lifecycle.references,
        false_positives: lifecycle.false_positives,
        events,
        prefilter,
        has_detect,
        tests,
        position,
        extra_reads,
        warnings,
    })
}

/// The lifecycle keys of a rule's metadata, as read.
struct LifecycleKeys {
    status: RuleStatus,
    enabled: bool,
    disabled_reason: Option<String>,
    author: Option<String>,
    references: Vec<String>,
    false_positives: Vec<String>,
}

/// Reads `status`, `enabled`, `disabled_reason`, `author`, `references` and
/// `false_positives`, reporting each problem at its key (or, for a reference, at its text).
fn parse_lifecycle(
    meta: &Map,
    source: &str,
    rule_offset: usize,
    at_key: &mut impl FnMut(&str, &'static str, String),
) -> LifecycleKeys {
    let text = |key: &str| meta.get(key).map(|v| v.clone().into_string().ok());
    let status = match text("status") {
        None => RuleStatus::default(),
        Some(Some(name)) => match RuleStatus::parse(&name) {
            Some(status) if status != RuleStatus::Unsupported => status,
            Some(_) => {
                at_key(
                    "status",
                    "rule-bad-status",
                    format!(
                        "status `{name}` is Sigma's word for a rule that cannot run; a rule that must not run says `enabled: false` with a `disabled_reason`; use one of {}",
                        lifecycle::RHAI_STATUSES.join(", ")
                    ),
                );
                RuleStatus::default()
            }
            None => {
                at_key(
                    "status",
                    "rule-bad-status",
                    format!(
                        "unknown status `{name}`{}; use one of {}",
                        crate::diagnostics::did_you_mean(&name, lifecycle::RHAI_STATUSES),
                        lifecycle::RHAI_STATUSES.join(", ")
                    ),
                );
                RuleStatus::default()
            }
        },
        Some(None) => {
            at_key(
                "status",
                "rule-bad-status",
                format!(
                    "`status` must be a string: one of {}",
                    lifecycle::RHAI_STATUSES.join(", ")
                ),
            );
            RuleStatus::default()
        }
    };
    let enabled = match meta.get("enabled") {
        None => true,
        Some(value) => value.as_bool().unwrap_or_else(|_| {
            at_key(
                "enabled",
                "rule-bad-enabled",
                "`enabled` must be true or false".into(),
            );
            true
        }),
    };
    // An empty reason is no reason: whoever finds the rule off must learn why.
    let disabled_reason = match text("disabled_reason") {
        None => None,
        Some(Some(reason)) if !reason.trim().is_empty() => Some(reason),
        Some(_) => {
            at_key(
                "disabled_reason",
                "rule-bad-disabled-reason",
                "`disabled_reason` must be a non-empty string saying why the rule is off".into(),
            );
            None
        }
    };
    if !enabled && disabled_reason.is_none() && !meta.contains_key("disabled_reason") {
        at_key(
            "enabled",
            "rule-disabled-without-reason",
            "a rule with `enabled: false` needs a `disabled_reason` saying why it is off (a ticket, a date, what must change)".into(),
        );
    }
    let author = match text("author") {
        None => None,
        Some(Some(author)) => Some(author),
        Some(None) => {
            at_key(
                "author",
                "rule-bad-author",
                "`author` must be a string".into(),
            );
            None
        }
    };
    let mut list = |key: &str| match meta.get(key) {
        None => Vec::new(),
        Some(value) => string_list(value).unwrap_or_else(|| {
            at_key(
                key,
                "rule-bad-list",
                format!("`{key}` must be an array of strings"),
            );
            Vec::new()
        }),
    };
    let references = list("references");
    let false_positives = list("false_positives");
    for reference in &references {
        if let Err(problem) = check_reference(reference) {
            // At the reference's own quoted text when it can be found, else at the key.
            let needle = format!("\"{reference}\"");
            let written = source
                .get(rule_offset..)
                .is_some_and(|s| s.contains(&needle));
            at_key(
                if written { &needle } else { "references" },
                "rule-bad-reference",
                format!("reference `{reference}` {problem}"),
            );
        }
    }
    LifecycleKeys {
        status,
        enabled,
        disabled_reason,
        author,
        references,
        false_positives,
    }
}

/// A reference must be a link a person can follow: an absolute http or https URL with a host.
fn check_reference(reference: &str) -> Result<(), String> {
    match url::Url::parse(reference) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        Ok(url) => Err(format!(
            "is not an http or https link (scheme `{}`)",
            url.scheme()
        )),
        Err(err) => Err(format!("is not a URL: {err}")),
    }
}

/// Two mistakes only the source shows: a function reading a top-level variable (the engine
/// calls `detect` without the top level, so the read fails on every event), and `in_list` naming
/// a list that does not exist.
fn shared_state_and_lists(
    path: &Path,
    source: &str,
    library: &Library,
    problems: &mut Diagnostics,
) {
    let shape = references::outline(source);
    for function in &shape.functions {
        for (name, offset) in &function.outside_reads {
            let Some((_, defined)) = shape.globals.iter().find(|(global, _)| global == name) else {
                continue;
            };
            problems.push(Diagnostic::at(
                path,
                source,
                text_position(source, *offset, ""),
                "rule-top-level-state",
                stateless(
                    &function.name,
                    name,
                    text_position(source, *defined, "").line,
                ),
            ));
        }
    }
    for (name, offset) in &shape.list_names {
        if let Err(message) = library.lists.resolve(name) {
            problems.push(Diagnostic::at(
                path,
                source,
                text_position(source, *offset, ""),
                "rule-unknown-list",
                format!("`in_list`: {message}"),
            ));
        }
    }
}

/// The message for a function using a top-level variable.
fn stateless(function: &str, name: &str, line: usize) -> String {
    format!(
        "`{function}` reads `{name}`, defined at the top level (line {line}); rules are stateless: `{function}` runs for each event without the top level, so this fails on every event. Keep a fixed value inside the function, share values through a list (`lists/`, `in_list(...)`), and count or remember across events with the tracker (`first_seen`, ...) or a Sigma correlation"
    )
}

/// When `name`, undefined at `at`, is a top-level variable used inside a function: the message.
fn top_level_state(source: &str, name: &str, at: Position) -> Option<String> {
    let shape = references::outline(source);
    let (_, defined) = shape.globals.iter().find(|(global, _)| global == name)?;
    let function = shape
        .functions
        .iter()
        .rev()
        .find(|f| text_position(source, f.offset, "").line <= at.line)?;
    Some(stateless(
        &function.name,
        name,
        text_position(source, *defined, "").line,
    ))
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
        } else if let Ok(b) = item.as_bool() {
            // `exists: true`
            Some(b.to_string())
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
mod shared_tests;
#[cfg(test)]
mod tests;
