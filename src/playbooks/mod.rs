//! Playbooks: YAML files in `playbooks/*.yaml` that say which steps to take for which
//! detections. The contract is written for authors in `docs/playbooks.md`.
//!
//! [`load_playbook`] parses with `yaml_serde` (unknown keys are errors), then validates the
//! parsed spec against the action registry and the loaded rules, collecting every problem with
//! its position. Planning (`plan.rs`) turns a detection into one
//! [`ActionRecord`](crate::actions::ActionRecord) per step.

mod plan;
pub mod spec;
mod template;

pub use plan::{DETECTION_FIELDS, ENTITY_FIELDS, PlanOutcome, Planner, WHEN_FAILED, WHEN_FALSE};
pub use spec::{HighRiskApproval, OnFailure, PlaybookMode, PlaybookSpec};
pub use template::{Reference, Template, TemplateError};

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{AST, Dynamic, Engine, Scope};

use crate::actions::{self, ActionSpec, ParamSpec, ParamType, Risk};
use crate::cases::{Expectation, TestCase, TestInput};
use crate::detection::{Detection, RuleStatus, Severity, Stage};
use crate::diagnostics::{Diagnostic, Diagnostics, Position, YamlPath, did_you_mean, locate};
use crate::event::FieldType;
use crate::rules::references::{self, FieldRead};

/// A validated playbook, ready to plan with.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub id: Arc<str>,
    pub title: String,
    pub path: PathBuf,
    pub mode: PlaybookMode,
    pub high_risk_approval: HighRiskApproval,
    pub notification_limit: Option<crate::actions::NotificationLimit>,
    pub trigger: Trigger,
    pub steps: Vec<Step>,
    pub tests: Vec<TestCase>,
    /// Reads of `event` fields the event model does not type, in `when` conditions and
    /// `{{ }}` references: loading checks them against the config's `events.extra_fields`.
    pub extra_reads: Vec<FieldRead>,
}

/// Every name a playbook trigger may give a rule, mapped to the ids its detections carry: a
/// Rhai rule's id; a Sigma rule's id and `name`; a Sigma file's stem, which stands for every rule
/// in the file.
#[derive(Debug, Clone, Default)]
pub struct RuleNames {
    names: HashMap<String, Vec<Arc<str>>>,
}

impl RuleNames {
    /// Adds `name` for the rule whose detections carry `id`.
    pub fn insert(&mut self, name: &str, id: &Arc<str>) {
        let ids = self.names.entry(name.to_string()).or_default();
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }

    /// The detection ids a trigger's `name` stands for.
    pub fn get(&self, name: &str) -> Option<&[Arc<str>]> {
        self.names.get(name).map(Vec::as_slice)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }
}

#[derive(Debug, Clone)]
pub struct Trigger {
    pub rules: Vec<Arc<str>>,
    pub tags: Vec<String>,
    pub min_severity: Option<Severity>,
    pub stages: Vec<Stage>,
    /// Empty: the statuses acted on by default ([`RuleStatus::acted_on_by_default`]).
    pub statuses: Vec<RuleStatus>,
}

impl Trigger {
    pub fn matches(&self, detection: &Detection) -> bool {
        self.mismatch(detection).is_none()
    }

    /// The first part of the trigger `detection` does not meet (`None` when it matches), so
    /// `palisade explain` says why a playbook did not run with the same test that decided it.
    pub fn mismatch(&self, detection: &Detection) -> Option<&'static str> {
        if !(self.rules.is_empty() || self.rules.contains(&detection.rule)) {
            return Some("its rule is not one the trigger names");
        }
        if !(self.tags.is_empty()
            || self.tags.iter().any(|wanted| {
                detection.tags.iter().any(|tag| {
                    tag == wanted
                        || (tag.starts_with(wanted.as_str())
                            && tag.as_bytes().get(wanted.len()) == Some(&b'.'))
                })
            }))
        {
            return Some("it has none of the trigger's tags");
        }
        if self
            .min_severity
            .is_some_and(|min| detection.severity < min)
        {
            return Some("its severity is below the trigger's min_severity");
        }
        if !(self.stages.is_empty() || self.stages.contains(&detection.stage)) {
            return Some("its stage is not one the trigger names");
        }
        if !self.acts_on(detection.status) {
            return Some(
                "its rule's status is one the trigger does not act on (see the trigger's `statuses`)",
            );
        }
        None
    }

    /// Whether the trigger takes detections of rules in `status`.
    pub fn acts_on(&self, status: RuleStatus) -> bool {
        if self.statuses.is_empty() {
            status.acted_on_by_default()
        } else {
            self.statuses.contains(&status)
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub action: &'static ActionSpec,
    /// Every parameter of the action that has a value (given or defaulted), in registry order.
    pub params: Vec<(&'static ParamSpec, Template)>,
    pub when: Option<Arc<AST>>,
    pub risk: Risk,
    pub on_failure: OnFailure,
}

/// Builds the scope `when` conditions are compiled and evaluated in.
pub fn condition_scope(event: Dynamic, detection: Dynamic) -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push("event", event);
    scope.push("detection", detection);
    scope
}

/// The JSON Schema of a playbook file, built once from [`PlaybookSpec`]. It lives beside the
/// type because reading a playbook needs it (unknown keys are reported against it).
pub fn schema() -> &'static serde_json::Value {
    static SCHEMA: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| {
        serde_json::to_value(schemars::schema_for!(PlaybookSpec)).unwrap_or(serde_json::Value::Null)
    });
    &SCHEMA
}

/// Parses and validates one playbook file against the action registry and the loaded rules.
/// `engine` compiles `when` conditions (it is the sandboxed rule engine); `rules_incomplete`
/// says some rule files failed to load, which softens "rule does not exist". With `policy`,
/// literal parameters are checked against the executor's target policy, so a step that could
/// only ever be refused (`address: 1.2.3.4/0`, `pid: 1`) fails validation.
pub fn load_playbook(
    path: &Path,
    source: &str,
    rules: &RuleNames,
    rules_incomplete: bool,
    engine: &Engine,
    policy: Option<&actions::Policy>,
) -> Result<Playbook, Diagnostics> {
    let (spec, unknown_keys): (PlaybookSpec, Diagnostics) =
        crate::diagnostics::parse_yaml(path, source, schema())?;
    let context = format!("playbook `{}`", spec.id);
    let mut problems = Diagnostics::default();
    for d in unknown_keys {
        problems.push(d.with_context(context.clone()));
    }
    Validator {
        path,
        rules_incomplete,
        source,
        problems,
        context,
        policy,
        extra_reads: Vec::new(),
    }
    .validate(spec, rules, engine)
}

struct Validator<'a> {
    path: &'a Path,
    /// Some rule files failed to load, so a missing rule may be in one of them.
    rules_incomplete: bool,
    source: &'a str,
    problems: Diagnostics,
    context: String,
    policy: Option<&'a actions::Policy>,
    extra_reads: Vec<FieldRead>,
}

impl Validator<'_> {
    fn report(&mut self, at: &YamlPath, code: &'static str, message: impl Into<String>) {
        let diagnostic = Diagnostic::at(
            self.path,
            self.source,
            locate(self.source, at),
            code,
            message,
        )
        .with_context(self.context.clone());
        self.problems.push(diagnostic);
    }

    fn validate(
        mut self,
        spec: PlaybookSpec,
        rules: &RuleNames,
        engine: &Engine,
    ) -> Result<Playbook, Diagnostics> {
        let root = YamlPath::root();
        if !crate::rules::is_valid_id(&spec.id) {
            self.report(
                &root.key("id"),
                "playbook-bad-id",
                format!(
                    "playbook id `{}` must be lowercase letters, digits, `-`, `_` or `.`",
                    spec.id
                ),
            );
        }
        let trigger = self.trigger(&spec.trigger, rules, &root.key("trigger"));
        if spec.steps.is_empty() {
            self.report(
                &root.key("steps"),
                "playbook-no-steps",
                "a playbook needs at least one step",
            );
        }
        let mut steps = Vec::new();
        let mut step_ids = HashSet::new();
        for (index, step) in spec.steps.iter().enumerate() {
            let at = root.key("steps").index(index);
            if !step_ids.insert(step.id.clone()) {
                self.report(
                    &at.key("id"),
                    "playbook-duplicate-step",
                    format!("step id `{}` is used twice", step.id),
                );
            }
            if let Some(step) = self.step(step, &at, engine) {
                steps.push(step);
            }
        }
        let tests = self.tests(&spec, &root.key("tests"));
        let notification_limit = spec
            .notification_limit
            .as_ref()
            .and_then(|limit| self.notification_limit(limit, &root.key("notification_limit")));
        if !self.problems.is_empty() {
            return Err(self.problems);
        }
        Ok(Playbook {
            id: Arc::from(spec.id),
            title: spec.title,
            path: self.path.to_path_buf(),
            mode: spec.mode,
            high_risk_approval: spec.high_risk_approval,
            notification_limit,
            trigger,
            steps,
            tests,
            extra_reads: self.extra_reads,
        })
    }

    /// Where `needle` is written in the value at `at`, searched from `nominal` bytes into the
    /// value: quotes, escapes and block-scalar indentation only ever push the text further on
    /// than its offset in the parsed value. Falls back to the value's own position.
    fn position_in_value(&self, at: &YamlPath, nominal: usize, needle: &str) -> Position {
        let value = locate(self.source, at);
        let start = byte_offset(self.source, value).saturating_add(nominal);
        match self.source.get(start..).and_then(|rest| rest.find(needle)) {
            Some(found) => crate::rules::text_position(self.source, start + found, ""),
            None => value,
        }
    }

    /// Checks the fields a `when` condition reads: a `detection.*` name outside the detection's
    /// closed set is an error (the condition could only ever read `()`); an `event.*` name the
    /// model does not type is kept for the check against declared extra fields.
    fn when_reads(&mut self, condition: &str, at: &YamlPath) -> bool {
        let mut ok = true;
        for read in references::reads(condition, &["event", "detection"]) {
            let Some(first) = read.segments.first() else {
                continue;
            };
            if read.root == 0 {
                if !crate::rules::is_event_map_key(&first.name) {
                    let position = self.position_in_value(at, first.offset, &first.name);
                    self.extra_reads.push(FieldRead {
                        path: read.segments.iter().map(|s| s.name.clone()).collect(),
                        position,
                    });
                }
                continue;
            }
            let (unknown, known): (&references::Segment, &[&str]) =
                if !DETECTION_FIELDS.contains(&first.name.as_str()) {
                    (first, &DETECTION_FIELDS)
                } else if first.name == "entity"
                    && let Some(second) = read.segments.get(1)
                    && !ENTITY_FIELDS.contains(&second.name.as_str())
                {
                    (second, &ENTITY_FIELDS)
                } else {
                    continue;
                };
            let written = read
                .segments
                .iter()
                .take_while(|s| s.offset <= unknown.offset)
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(".");
            let position = self.position_in_value(at, unknown.offset, &unknown.name);
            let diagnostic = Diagnostic::at(
                self.path,
                self.source,
                position,
                "when-unknown-field",
                format!(
                    "`when` reads `detection.{written}`, which a detection does not have{}; {}: {}",
                    did_you_mean(&unknown.name, known.iter().copied()),
                    if known.len() == ENTITY_FIELDS.len() {
                        "entity fields"
                    } else {
                        "detection fields"
                    },
                    known.join(", ")
                ),
            )
            .with_context(self.context.clone());
            self.problems.push(diagnostic);
            ok = false;
        }
        ok
    }

    fn notification_limit(
        &mut self,
        spec: &spec::NotificationLimitSpec,
        at: &YamlPath,
    ) -> Option<crate::actions::NotificationLimit> {
        if spec.count == 0 {
            self.report(
                &at.key("count"),
                "playbook-bad-notification-limit",
                "`count` must be at least 1 (a limit of 0 would hold back every message)",
            );
        }
        let window = crate::duration::parse(&spec.window).filter(|w| !w.is_zero());
        if window.is_none() {
            self.report(
                &at.key("window"),
                "playbook-bad-notification-limit",
                format!(
                    "`window` must be a duration such as 30s, 1m or 1h, not `{}`",
                    spec.window
                ),
            );
        }
        Some(crate::actions::NotificationLimit {
            count: (spec.count > 0).then_some(spec.count)?,
            window: window?,
        })
    }

    fn trigger(&mut self, spec: &spec::TriggerSpec, rules: &RuleNames, at: &YamlPath) -> Trigger {
        if spec.rules.is_empty()
            && spec.tags.is_empty()
            && spec.min_severity.is_none()
            && spec.stages.is_empty()
            && spec.statuses.is_empty()
        {
            self.report(at, "playbook-trigger-everything", "the trigger names no rules, tags, min_severity, stages or statuses, so it would run on every detection");
        }
        let mut names = Vec::new();
        for (index, rule) in spec.rules.iter().enumerate() {
            if let Some(detector) = crate::detection::BUILT_IN_DETECTORS
                .iter()
                .find(|d| **d == rule.as_str())
            {
                names.push(Arc::from(*detector));
                continue;
            }
            match rules.get(rule.as_str()) {
                Some(ids) => names.extend(ids.iter().cloned()),
                None => {
                    let hint = did_you_mean(
                        rule,
                        rules
                            .names()
                            .chain(crate::detection::BUILT_IN_DETECTORS.iter().copied()),
                    );
                    self.report(
                        &at.key("rules").index(index),
                        "playbook-unknown-rule",
                        format!(
                            "trigger names rule `{rule}`, which does not exist{}{hint}",
                            if self.rules_incomplete {
                                " (or is in a rule file that failed to load)"
                            } else {
                                ""
                            }
                        ),
                    );
                }
            }
        }
        Trigger {
            rules: names,
            tags: spec.tags.clone(),
            min_severity: spec.min_severity,
            stages: spec.stages.clone(),
            statuses: spec.statuses.clone(),
        }
    }

    fn step(&mut self, spec: &spec::StepSpec, at: &YamlPath, engine: &Engine) -> Option<Step> {
        if !crate::rules::is_valid_id(&spec.id) {
            self.report(
                &at.key("id"),
                "playbook-bad-id",
                format!(
                    "step id `{}` must be lowercase letters, digits, `-`, `_` or `.`",
                    spec.id
                ),
            );
        }
        let Some(action) = actions::lookup(&spec.action) else {
            let hint = did_you_mean(&spec.action, actions::names());
            self.report(
                &at.key("action"),
                "unknown-action",
                format!(
                    "unknown action `{}`{hint}; actions: {}",
                    spec.action,
                    actions::names().collect::<Vec<_>>().join(", ")
                ),
            );
            return None;
        };
        let mut ok = true;
        for name in spec.params.keys() {
            if action.param(name).is_none() {
                let known: Vec<&str> = action.params.iter().map(|p| p.name).collect();
                let hint = did_you_mean(name, known.iter().copied());
                self.report(
                    &at.key("with").key(name),
                    "unknown-parameter",
                    format!(
                        "`{}` has no parameter `{name}`{hint}; parameters: {}",
                        action.name,
                        known.join(", ")
                    ),
                );
                ok = false;
            }
        }
        let mut params = Vec::new();
        for param in action.params {
            let value_at = at.key("with").key(param.name);
            let text = match spec.params.get(param.name) {
                Some(value) => match scalar_text(value) {
                    Some(text) => text,
                    None => {
                        self.report(
                            &value_at,
                            "wrong-parameter-type",
                            format!(
                                "parameter `{}` must be text or a number, not a list or map",
                                param.name
                            ),
                        );
                        ok = false;
                        continue;
                    }
                },
                None => match (param.default, param.required) {
                    (Some(default), _) => default.to_string(),
                    (None, true) => {
                        self.report(
                            &at.key("action"),
                            "missing-parameter",
                            format!(
                                "`{}` needs parameter `{}` ({})",
                                action.name,
                                param.name,
                                param.kind.describe()
                            ),
                        );
                        ok = false;
                        continue;
                    }
                    (None, false) => continue,
                },
            };
            match self.template(param, &text, &value_at) {
                Some(template) => params.push((param, template)),
                None => ok = false,
            }
        }
        // A step that may block wider than the configured limit is high-risk, whatever it says.
        let risk = if params
            .iter()
            .any(|(p, _)| p.kind == ParamType::PrefixLength)
        {
            Risk::High
        } else {
            spec.risk.unwrap_or(action.default_risk)
        };
        if ok && !self.literal_targets_allowed(action, &params, spec, at) {
            ok = false;
        }
        let when = match &spec.when {
            None => None,
            Some(condition) => {
                let scope = condition_scope(Dynamic::UNIT, Dynamic::UNIT);
                match engine.compile_expression_with_scope(&scope, condition) {
                    Ok(ast) => {
                        if !self.when_reads(condition, &at.key("when")) {
                            ok = false;
                        }
                        Some(Arc::new(ast))
                    }
                    Err(err) => {
                        self.report(
                            &at.key("when"),
                            "when-syntax",
                            format!("`when` is not a valid Rhai expression: {}", err.err_type()),
                        );
                        ok = false;
                        None
                    }
                }
            }
        };
        ok.then(|| Step {
            id: spec.id.clone(),
            action,
            params,
            when,
            risk,
            on_failure: spec.on_failure,
        })
    }

    /// A block wider than `actions.widest_block` must be asked for in the playbook itself, never
    /// by an event: `widest_prefix` is a literal on a high-risk step. Literal targets are put to
    /// the executor's target policy now, so a step that would always be refused does not load.
    fn literal_targets_allowed(
        &mut self,
        action: &'static ActionSpec,
        params: &[(&'static ParamSpec, Template)],
        spec: &spec::StepSpec,
        at: &YamlPath,
    ) -> bool {
        let mut ok = true;
        let mut literals = std::collections::BTreeMap::new();
        for (param, template) in params {
            let literal = template.as_literal().and_then(|t| param.kind.parse(t).ok());
            if param.kind == ParamType::PrefixLength && literal.is_none() {
                self.report(
                    &at.key("with").key(param.name),
                    "wrong-parameter-type",
                    format!(
                        "parameter `{}` must be a literal prefix length: how wide a block may be is the playbook's decision, not an event's",
                        param.name
                    ),
                );
                ok = false;
            }
            if param.kind == ParamType::PrefixLength && spec.risk.is_some_and(|r| r != Risk::High) {
                self.report(
                    &at.key("risk"),
                    "wide-block-risk",
                    format!(
                        "a step with `{}` may block more than `actions.widest_block`: it must be `risk: high`",
                        param.name
                    ),
                );
                ok = false;
            }
            if let Some(value) = literal {
                literals.insert(param.name, value);
            }
        }
        let Some(policy) = self.policy else {
            return ok;
        };
        let names: Vec<&str> = literals
            .get("name")
            .and_then(|v| match v {
                actions::ParamValue::Text(name) => Some(name.as_str()),
                _ => None,
            })
            .into_iter()
            .collect();
        let target = actions::policy::Target {
            action: action.name,
            params: &literals,
            process_names: &names,
            evidence: &[],
            approved: false,
        };
        if let actions::policy::Verdict::Refused(refusal) = actions::policy::check(policy, &target)
        {
            let at = if literals.contains_key(action.target) {
                at.key("with").key(action.target)
            } else {
                at.key("with")
            };
            self.report(
                &at,
                "refused-target",
                format!("the executor would refuse every run of this step: {refusal}"),
            );
            ok = false;
        }
        ok
    }

    /// Parses a parameter's text and checks its type: a literal must parse now; a single
    /// reference must be of a type that can fill the parameter.
    fn template(&mut self, param: &ParamSpec, text: &str, at: &YamlPath) -> Option<Template> {
        let template = match Template::parse(text) {
            Ok(template) => template,
            Err(problem) => {
                self.report(at, "bad-template", problem.to_string());
                return None;
            }
        };
        for (written, reference) in template.references() {
            if let Reference::EventExtra(path) = reference
                && let Some(first) = path.first()
            {
                let nominal = text.find(written).unwrap_or(0) + "event.".len();
                let position = self.position_in_value(at, nominal, first);
                self.extra_reads.push(FieldRead {
                    path: path.clone(),
                    position,
                });
            }
        }
        if let Some(literal) = template.as_literal() {
            if let Err(message) = param.kind.parse(literal) {
                self.report(
                    at,
                    "wrong-parameter-type",
                    format!("parameter `{}`: {message}", param.name),
                );
                return None;
            }
        } else if let Some((text, reference)) = template.as_single_reference() {
            let fits = match (param.kind, reference.field_type()) {
                (_, None) | (ParamType::Text, _) => true,
                (ParamType::Address, Some(t)) => t == FieldType::IpAddress,
                (ParamType::Pid, Some(t)) => t == FieldType::Integer,
                (
                    ParamType::Url
                    | ParamType::Channel
                    | ParamType::HostPort
                    | ParamType::HeaderLine
                    | ParamType::Recipients,
                    Some(t),
                ) => t == FieldType::Text,
                (ParamType::Duration | ParamType::Choice(_) | ParamType::PrefixLength, Some(_)) => {
                    false
                }
            };
            if !fits {
                let found = reference
                    .field_type()
                    .map_or("a value", FieldType::describe);
                self.report(
                    at,
                    "wrong-parameter-type",
                    format!(
                        "parameter `{}` needs {}, but `{text}` is {found}",
                        param.name,
                        param.kind.describe()
                    ),
                );
                return None;
            }
        } else if !matches!(
            param.kind,
            ParamType::Text
                | ParamType::Url
                | ParamType::Channel
                | ParamType::HeaderLine
                | ParamType::Recipients
        ) {
            self.report(
                at,
                "wrong-parameter-type",
                format!("parameter `{}` needs {}: write a literal or a single `{{{{ reference }}}}`, not text around a reference", param.name, param.kind.describe()),
            );
            return None;
        }
        Some(template)
    }

    fn tests(&mut self, spec: &PlaybookSpec, at: &YamlPath) -> Vec<TestCase> {
        let mut cases = Vec::new();
        for (index, test) in spec.tests.iter().enumerate() {
            let case_at = at.index(index);
            let input = match (&test.events, &test.fixture) {
                (Some(events), None) => TestInput::Events(events.clone()),
                (None, Some(fixture)) => match TestInput::fixture(fixture.clone()) {
                    Ok(input) => input,
                    Err(message) => {
                        self.report(
                            &case_at.key("fixture"),
                            "playbook-bad-test",
                            format!("test `{}`: {message}", test.name),
                        );
                        continue;
                    }
                },
                _ => {
                    self.report(
                        &case_at,
                        "playbook-bad-test",
                        format!(
                            "test `{}` needs exactly one of `events` or `fixture`",
                            test.name
                        ),
                    );
                    continue;
                }
            };
            if let Some(actions) = &test.expect.actions {
                for (i, expected) in actions.iter().enumerate() {
                    if let Some(step) = &expected.step
                        && !spec.steps.iter().any(|s| &s.id == step)
                    {
                        self.report(
                            &case_at.key("expect").key("actions").index(i).key("step"),
                            "playbook-bad-test",
                            format!(
                                "test `{}` expects step `{step}`, which the playbook does not have{}",
                                test.name,
                                did_you_mean(step, spec.steps.iter().map(|s| s.id.as_str()))
                            ),
                        );
                    }
                }
            }
            cases.push(TestCase {
                name: test.name.clone(),
                input,
                expect: Expectation::Outcome(test.expect.clone()),
                intel: test.intel.clone(),
                anomaly: test.anomaly,
                file: self.path.to_path_buf(),
                line: locate(self.source, &case_at).line,
            });
        }
        cases
    }
}

/// The byte offset of `position` (1-based line and character column) in `source`.
fn byte_offset(source: &str, position: Position) -> usize {
    let mut offset = 0;
    for (index, line) in source.split_inclusive('\n').enumerate() {
        if index + 1 == position.line {
            return offset
                + line
                    .char_indices()
                    .nth(position.column.saturating_sub(1))
                    .map_or(line.len(), |(at, _)| at);
        }
        offset += line.len();
    }
    source.len()
}

fn scalar_text(value: &yaml_serde::Value) -> Option<String> {
    match value {
        yaml_serde::Value::String(s) => Some(s.clone()),
        yaml_serde::Value::Number(n) => Some(n.to_string()),
        yaml_serde::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
