//! Runs embedded test cases through the real pipeline (every rule and playbook loaded, actions
//! planned as with dry-run off) and compares what came out with what the case expects.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::anomaly::AnomalyHandle;
use crate::content::Content;
use crate::event::{Event, normalize, normalize_value};
use crate::pipeline::{Outcome, Pipeline, RuleSelection, Stages};
use crate::sinks::{action_line, detection_line, replay_lines};
use crate::sources::jsonl::JsonlReader;

use super::{
    Expectation, ExpectedAction, ExpectedOutcome, MAX_FIXTURE_BYTES, TestCase, TestIndicator,
    TestInput, check_fixture_path,
};
use crate::intel::indicator::canonical;
use crate::intel::{Indicator, IntelHandle, Matcher};

/// The timestamp given to inline test events that have none.
const TEST_TIMESTAMP: &str = "2025-01-01T00:00:00Z";

/// The result of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    pub file: PathBuf,
    pub line: usize,
    /// The rule or playbook id the case belongs to (`fixture` for fixture snapshots).
    pub owner: String,
    pub name: String,
    /// Empty when the case passed; otherwise lines explaining the difference.
    pub problems: Vec<String>,
    /// Why the case was not run (its rule is disabled); it neither passed nor failed.
    pub skipped: Option<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.problems.is_empty() && self.skipped.is_none()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestReport {
    pub cases: Vec<CaseResult>,
}

impl TestReport {
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| !c.problems.is_empty()).count()
    }

    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed()).count()
    }

    pub fn skipped(&self) -> usize {
        self.cases.iter().filter(|c| c.skipped.is_some()).count()
    }
}

/// Why no test could run at all (a case that cannot run is a failed case in the report instead).
#[derive(Debug, thiserror::Error)]
pub enum TestRunError {
    #[error(transparent)]
    Model(#[from] crate::anomaly::ModelError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
}

/// Runs every case whose owner or name contains `filter` (all when `None`).
pub fn run_tests(content: &Arc<Content>, filter: Option<&str>) -> Result<TestReport, TestRunError> {
    // Cases with `anomaly: true` score with the configured model file, else the shipped example
    // (the engine's learned model lives in its state database, not in the content).
    let config = &content.config.anomaly;
    let model = match crate::anomaly::load_optional(
        &content.resolve(&crate::anomaly::model_or_example(config)),
    )? {
        Some(model) => AnomalyHandle::new(Some(model), config.threshold),
        None => AnomalyHandle::default(),
    };
    // A snapshot is what `palisade replay` prints: a model only when the config names one (the
    // learned model lives in a running engine's state database).
    let engine_model = Stages::from_content(content)?.anomaly;
    let mut report = TestReport::default();
    let selected =
        |owner: &str, name: &str| filter.is_none_or(|f| owner.contains(f) || name.contains(f));
    for rule in &content.rules {
        for case in rule.tests.iter().filter(|c| selected(&rule.id, &c.name)) {
            // A disabled rule never runs, so its cases could only say so; they are listed as
            // skipped with the reason, not failed (the rule is often off because it misfires).
            if !rule.enabled {
                let reason = rule.disabled_reason.as_deref().unwrap_or("no reason given");
                let mut skipped = result(case, &rule.id, Vec::new());
                skipped.skipped = Some(format!("rule disabled: {reason}"));
                report.cases.push(skipped);
                continue;
            }
            // A rule's own cases run whatever `rules.statuses` says: a rule on trial is the one
            // that most needs its tests.
            let model = case.anomaly.then_some(&model);
            let problems = match outcome_of(
                content,
                &case.input,
                &case.intel,
                model,
                RuleSelection::EveryStatus,
            ) {
                Ok(outcome) => {
                    let mut problems = check_rule(&rule.id, &case.expect, &outcome);
                    explain_verdict(content, case, model, &rule.id, &mut problems);
                    problems
                }
                Err(problem) => vec![problem],
            };
            report.cases.push(result(case, &rule.id, problems));
        }
    }
    for (rule, case) in &content.sigma.tests {
        // Sigma ids are UUIDs; people know a rule by its file's stem.
        let sigma = &content.sigma;
        let owner = sigma
            .rules
            .iter()
            .find(|r| r.id == *rule)
            .map(|r| r.stem.to_string())
            .or_else(|| {
                let c = sigma.correlations.iter().find(|c| c.id == *rule)?;
                c.name.as_deref().map(str::to_string)
            })
            .unwrap_or_else(|| rule.to_string());
        if !selected(&owner, &case.name) && !selected(rule, &case.name) {
            continue;
        }
        let problems = match outcome_of(
            content,
            &case.input,
            &case.intel,
            None,
            RuleSelection::EveryStatus,
        ) {
            Ok(outcome) => {
                let mut problems = check_rule(rule, &case.expect, &outcome);
                explain_verdict(content, case, None, rule, &mut problems);
                problems
            }
            Err(problem) => vec![problem],
        };
        report.cases.push(result(case, &owner, problems));
    }
    for playbook in &content.playbooks {
        for case in playbook
            .tests
            .iter()
            .filter(|c| selected(&playbook.id, &c.name))
        {
            let problems = match (
                &case.expect,
                outcome_of(
                    content,
                    &case.input,
                    &case.intel,
                    case.anomaly.then_some(&model),
                    RuleSelection::Configured,
                ),
            ) {
                (Expectation::Outcome(expected), Ok(outcome)) => {
                    check_playbook(&playbook.id, expected, &outcome)
                }
                (_, Err(problem)) => vec![problem],
                (_, Ok(_)) => vec!["a playbook test must expect detections and actions".into()],
            };
            report.cases.push(result(case, &playbook.id, problems));
        }
    }
    for (events, expected) in fixture_snapshots(content) {
        let name = content.resolve(&events).display().to_string();
        if !selected("fixture", &name) {
            continue;
        }
        let problems = check_snapshot(content, &engine_model, &events, &expected)
            .unwrap_or_else(|problem| vec![problem]);
        report.cases.push(CaseResult {
            file: content.resolve(&expected),
            line: 1,
            owner: "fixture".into(),
            name,
            problems,
            skipped: None,
        });
    }
    Ok(report)
}

fn result(case: &TestCase, owner: &str, problems: Vec<String>) -> CaseResult {
    CaseResult {
        file: case.file.clone(),
        line: case.line,
        owner: owner.to_string(),
        name: case.name.clone(),
        problems,
        skipped: None,
    }
}

/// Runs the case's events through a fresh pipeline with dry-run off, so tests see the
/// decisions the engine would make when it acts.
/// The case's own matcher: its indicators, marked against the content's warninglists.
pub(crate) fn case_intel(
    content: &Content,
    intel: &[TestIndicator],
) -> Result<IntelHandle, String> {
    let mut indicators = Vec::new();
    for t in intel {
        let (kind, value) =
            canonical(None, &t.value).map_err(|e| format!("test indicator: {e}"))?;
        let mut indicator = Indicator::new(kind, value, &t.source);
        indicator.confidence = t.confidence.min(100);
        indicator.severity = t.severity.min(100);
        indicator.threat = t.threat.clone();
        indicator.subdomains = t.subdomains;
        indicators.push(indicator);
    }
    Ok(IntelHandle::new(Matcher::build(
        indicators,
        &content.warninglists,
        jiff::Timestamp::now().as_millisecond(),
    )))
}

/// `model`: the content's anomaly model, for the cases that use it (loaded once per run).
/// `selection`: a rule's own cases run every enabled rule; a playbook's run what the engine
/// would.
fn outcome_of(
    content: &Arc<Content>,
    input: &TestInput,
    intel: &[TestIndicator],
    model: Option<&AnomalyHandle>,
    selection: RuleSelection,
) -> Result<Outcome, String> {
    let events = case_events(content, input)?;
    let mut pipeline = case_pipeline(content, intel, model, selection)?;
    let mut outcome = Outcome::default();
    for event in &events {
        pipeline.process(event, &mut outcome);
    }
    Ok(outcome)
}

fn case_events(content: &Content, input: &TestInput) -> Result<Vec<Event>, String> {
    match input {
        TestInput::Events(values) => values
            .iter()
            .enumerate()
            .map(|(i, value)| inline_event(value).map_err(|e| format!("event {}: {e}", i + 1)))
            .collect::<Result<Vec<_>, _>>(),
        TestInput::Fixture(path) => read_fixture(content, path),
    }
}

/// A fresh pipeline for one case, with dry-run off, running the rules `selection` names.
fn case_pipeline(
    content: &Arc<Content>,
    intel: &[TestIndicator],
    model: Option<&AnomalyHandle>,
    selection: RuleSelection,
) -> Result<Pipeline, String> {
    // A fresh tracker for every case: what one case's events did must not leak into the next.
    let stages = Stages {
        anomaly: model.cloned().unwrap_or_default(),
        learner: None,
        tracker: Stages::fresh_tracker(content),
        correlation: Some(Stages::fresh_correlation(content)),
    };
    Pipeline::with_selection(
        content.clone(),
        false,
        case_intel(content, intel)?,
        stages,
        selection,
    )
    .map_err(|e| e.to_string())
}

/// Events of a case whose verdict is explained; a fixture of many is summed up by its first.
const EXPLAINED_EVENTS: usize = 3;

/// When a rule case failed because the rule did not fire (or fired when it should not have),
/// says why, from the case run again through the pipeline's explanation: which filter
/// condition said no (and the event's value), or what `detect` returned or its error; for an
/// unexpected match, which conditions held. Appended to the problem it explains.
fn explain_verdict(
    content: &Arc<Content>,
    case: &TestCase,
    model: Option<&AnomalyHandle>,
    rule: &str,
    problems: &mut [String],
) {
    let missed = |p: &String| p == DID_NOT_FIRE || p == NO_DETECTION;
    let unexpected = |p: &String| p.starts_with(FIRED);
    if !problems.iter().any(|p| missed(p) || unexpected(p)) {
        return;
    }
    let Ok(events) = case_events(content, &case.input) else {
        return;
    };
    // Explained as the case ran: a rule's own cases run whatever its status.
    let Ok(mut pipeline) = case_pipeline(content, &case.intel, model, RuleSelection::EveryStatus)
    else {
        return;
    };
    let mut outcome = Outcome::default();
    let mut why = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let explanation = pipeline.explain(event, &mut outcome);
        let said = verdict_of(&explanation, rule, event);
        if why.len() < EXPLAINED_EVENTS {
            why.push(if events.len() > 1 {
                format!("event {}: {said}", i + 1)
            } else {
                said
            });
        }
    }
    let why = why.join("; ");
    for problem in problems.iter_mut() {
        if missed(problem) || unexpected(problem) {
            problem.push_str(": ");
            problem.push_str(&why);
        }
    }
}

/// One line on what decided `rule` for one event.
fn verdict_of(
    explanation: &crate::pipeline::explain::Explanation,
    rule: &str,
    event: &Event,
) -> String {
    use crate::rules::DetectReport;
    let shown = |v: &Option<String>| {
        v.as_deref()
            .map(|v| format!("{:?}", crate::text::inert(v)))
            .unwrap_or_else(|| "none".into())
    };
    if let Some(report) = explanation.rules.iter().find(|r| &*r.rule == rule) {
        let filter = &report.filter;
        if !filter.passed {
            if let Some(intel) = filter.intel.as_ref().filter(|i| !i.held) {
                let kinds: Vec<&str> = intel.kinds.iter().map(|k| k.as_str()).collect();
                return format!(
                    "the filter said no: the event has no intel hit of kind {}",
                    if kinds.is_empty() {
                        "any".into()
                    } else {
                        kinds.join(", ")
                    }
                );
            }
            let failed: Vec<String> = filter
                .conditions
                .iter()
                .filter(|c| !c.held)
                .map(|c| {
                    format!(
                        "`{}` {} {:?} does not hold (the event's {} is {})",
                        c.field,
                        c.operator,
                        c.values,
                        c.field,
                        shown(&c.actual)
                    )
                })
                .collect();
            return format!("the filter said no: {}", failed.join(", "));
        }
        let held: Vec<String> = filter
            .conditions
            .iter()
            .map(|c| {
                format!(
                    "`{}` {} {:?}: {}",
                    c.field,
                    c.operator,
                    c.values,
                    shown(&c.actual)
                )
            })
            .collect();
        let filter = if held.is_empty() {
            "the filter passed".to_string()
        } else {
            format!("the filter's conditions held ({})", held.join(", "))
        };
        return match &report.detect {
            DetectReport::NotRun => format!("{filter}; `detect` did not run"),
            DetectReport::NoScript => format!("{filter}, and the filter is the whole rule"),
            DetectReport::Returned {
                value, detected, ..
            } => format!(
                "{filter}; `detect` returned {}{}",
                crate::text::inert(value),
                if *detected { " (a detection)" } else { "" }
            ),
            DetectReport::Failed { message } => {
                format!("{filter}; `detect` failed: {}", crate::text::inert(message))
            }
        };
    }
    if let Some(report) = explanation.sigma.iter().find(|r| &*r.rule == rule) {
        let searches: Vec<String> = report
            .searches
            .iter()
            .map(|(name, held)| format!("{name} {}", if *held { "matched" } else { "did not" }))
            .collect();
        let gate = match report.gate {
            Some(false) => "its literal gate said no (none of its literals is in the event); ",
            _ => "",
        };
        return format!(
            "the Sigma rule {}: {gate}{}",
            if report.matched {
                "matched"
            } else {
                "did not match"
            },
            searches.join(", ")
        );
    }
    format!("the rule is not for {} events", event.kind)
}

pub(crate) fn inline_event(value: &Value) -> Result<Event, String> {
    let mut value = value.clone();
    if let Value::Object(map) = &mut value {
        let is_ecs = !map.contains_key("type") && map.contains_key("event");
        let key = if is_ecs { "@timestamp" } else { "timestamp" };
        map.entry(key).or_insert_with(|| json!(TEST_TIMESTAMP));
    }
    let text = value.to_string();
    normalize_value(value, || {
        // Same id as the engine would derive from the same text.
        normalize(text.as_bytes()).map(|e| e.id).unwrap_or_default()
    })
    .map_err(|e| e.message)
}

pub(crate) fn read_fixture(content: &Content, path: &Path) -> Result<Vec<Event>, String> {
    let (shown, file) = open_inside(content, path)?;
    let mut reader = JsonlReader::new(std::io::Read::take(file, MAX_FIXTURE_BYTES + 1));
    let mut events = Vec::new();
    let mut read: u64 = 0;
    while let Some(line) = reader
        .next_line()
        .map_err(|e| format!("cannot read fixture `{}`: {e}", shown.display()))?
    {
        read += line.bytes.len() as u64 + 1;
        if read > MAX_FIXTURE_BYTES {
            return Err(too_large(&shown));
        }
        let event = normalize(&line.bytes)
            .map_err(|e| format!("{}:{}: {}", shown.display(), line.number, e.message))?;
        events.push(event);
    }
    Ok(events)
}

fn too_large(shown: &Path) -> String {
    format!(
        "fixture `{}` is larger than {MAX_FIXTURE_BYTES} bytes",
        shown.display()
    )
}

/// Opens `path` (relative to the content directory) for a test, after checking, on the file
/// itself, what the path checks at load cannot see: that it is a regular file (not a device or a
/// pipe, which would never end), no larger than [`MAX_FIXTURE_BYTES`], and that with symbolic
/// links followed it is still inside the content directory. Returns the path as shown to the
/// user and the open file.
fn open_inside(content: &Content, path: &Path) -> Result<(PathBuf, std::fs::File), String> {
    // The same check as at load, on the path about to be opened.
    check_fixture_path(path).map_err(|e| e.to_string())?;
    let shown = content.resolve(path);
    let cannot = |e: std::io::Error| format!("cannot read fixture `{}`: {e}", shown.display());
    let dir = content.dir.canonicalize().map_err(cannot)?;
    let real = shown.canonicalize().map_err(cannot)?;
    if !real.starts_with(&dir) {
        return Err(format!(
            "fixture `{}` leads outside the content directory (to `{}`)",
            shown.display(),
            real.display()
        ));
    }
    // Asked before opening: opening a pipe would already block.
    let metadata = std::fs::metadata(&real).map_err(cannot)?;
    if !metadata.is_file() {
        return Err(format!(
            "fixture `{}` is not a regular file",
            shown.display()
        ));
    }
    if metadata.len() > MAX_FIXTURE_BYTES {
        return Err(too_large(&shown));
    }
    let file = std::fs::File::open(&real).map_err(cannot)?;
    Ok((shown, file))
}

fn failures_of(rule: &str, outcome: &Outcome) -> Vec<String> {
    outcome
        .failures
        .iter()
        .filter(|f| &*f.rule == rule)
        .map(|f| format!("the rule failed on event `{}`: {}", f.event_id, f.message))
        .collect()
}

/// The problems [`explain_verdict`] adds the why to.
const DID_NOT_FIRE: &str = "expected the rule to fire; it did not";
const NO_DETECTION: &str = "expected a detection; the rule did not fire";
const FIRED: &str = "expected no detection; got";

fn check_rule(rule: &str, expect: &Expectation, outcome: &Outcome) -> Vec<String> {
    let mine: Vec<_> = outcome
        .detections
        .iter()
        .filter(|d| &*d.rule == rule)
        .collect();
    let mut problems = failures_of(rule, outcome);
    match expect {
        Expectation::Fires(true) if mine.is_empty() => {
            problems.push(DID_NOT_FIRE.into());
        }
        Expectation::Fires(false) => {
            for d in mine {
                problems.push(format!("{FIRED} `{}` on event `{}`", d.title, d.event_id));
            }
        }
        Expectation::Detection(fields) => match mine.first() {
            None => problems.push(NO_DETECTION.into()),
            Some(detection) => {
                let actual = detection_line(detection);
                for (key, want) in fields {
                    let got = actual.get(key).unwrap_or(&Value::Null);
                    if !json_contains(got, want) {
                        problems.push(format!("`{key}`: expected {want}, got {got}"));
                    }
                }
            }
        },
        Expectation::Fires(true) | Expectation::Outcome(_) => {}
    }
    problems
}

/// `want` is contained in `got`: equal, or for objects every key of `want` contained in `got`.
fn json_contains(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(got), Value::Object(want)) => want
            .iter()
            .all(|(k, v)| got.get(k).is_some_and(|g| json_contains(g, v))),
        _ => got == want,
    }
}

fn check_playbook(playbook: &str, expected: &ExpectedOutcome, outcome: &Outcome) -> Vec<String> {
    let mut problems = Vec::new();
    for failure in &outcome.failures {
        problems.push(format!(
            "rule `{}` failed on event `{}`: {}",
            failure.rule, failure.event_id, failure.message
        ));
    }
    if let Some(want) = &expected.detections {
        let got: Vec<&str> = outcome.detections.iter().map(|d| &*d.rule).collect();
        if got != want.iter().map(String::as_str).collect::<Vec<_>>() {
            problems.push(format!("detections: expected {want:?}, got {got:?}"));
        }
    }
    if let Some(want) = &expected.actions {
        let got: Vec<_> = outcome
            .actions
            .iter()
            .filter(|a| &*a.playbook == playbook)
            .collect();
        if got.len() != want.len() {
            problems.push(format!(
                "expected {} action(s), got {}",
                want.len(),
                got.len()
            ));
        }
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            for difference in action_differences(w, &action_line(g)) {
                problems.push(format!("action {}: {difference}", i + 1));
            }
        }
        for (i, extra) in got.iter().enumerate().skip(want.len()) {
            problems.push(format!(
                "action {} was not expected: {}",
                i + 1,
                action_line(extra)
            ));
        }
    }
    problems
}

fn action_differences(want: &ExpectedAction, got: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (key, expected) in [
        ("step", &want.step),
        ("action", &want.action),
        ("target", &want.target),
        ("status", &want.status),
    ] {
        if let Some(expected) = expected {
            let actual = got.get(key).and_then(Value::as_str).unwrap_or_default();
            if actual != expected {
                let reason = got
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(|r| format!(" (reason: {r})"))
                    .unwrap_or_default();
                out.push(format!(
                    "`{key}`: expected `{expected}`, got `{actual}`{reason}"
                ));
            }
        }
    }
    out
}

/// Where fixture snapshots are, relative to the content directory.
const SNAPSHOT_DIR: &str = "tests/fixtures";

/// `tests/fixtures/NAME.jsonl` files that have a `NAME.expected.jsonl` beside them, as paths
/// relative to the content directory (read through [`open_inside`] like any fixture).
fn fixture_snapshots(content: &Content) -> Vec<(PathBuf, PathBuf)> {
    let dir = content.resolve(Path::new(SNAPSHOT_DIR));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut pairs: Vec<(PathBuf, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            let stem = name.strip_suffix(".jsonl")?;
            if stem.ends_with(".expected") {
                return None;
            }
            let expected = format!("{stem}.expected.jsonl");
            dir.join(&expected).exists().then(|| {
                (
                    Path::new(SNAPSHOT_DIR).join(&name),
                    Path::new(SNAPSHOT_DIR).join(expected),
                )
            })
        })
        .collect();
    pairs.sort();
    pairs
}

/// Replays a fixture and compares its detection and action lines with the expected file.
fn check_snapshot(
    content: &Arc<Content>,
    model: &AnomalyHandle,
    events: &Path,
    expected: &Path,
) -> Result<Vec<String>, String> {
    let got = snapshot_lines(content, model, events)?;
    let want = read_expected(content, expected)?;
    let mut problems = Vec::new();
    for (i, pair) in want.iter().zip(&got).enumerate() {
        if pair.0 != pair.1 {
            problems.push(format!(
                "line {}:\n      expected {}\n      got      {}",
                i + 1,
                pair.0,
                pair.1
            ));
        }
    }
    if want.len() != got.len() {
        problems.push(format!("expected {} lines, got {}", want.len(), got.len()));
    }
    Ok(problems)
}

/// What the engine makes of a fixture's events: the lines `palisade replay` prints.
fn snapshot_lines(
    content: &Arc<Content>,
    model: &AnomalyHandle,
    events: &Path,
) -> Result<Vec<Value>, String> {
    // A snapshot is what the engine would do with these events: every stage, the model too.
    let outcome = outcome_of(
        content,
        &TestInput::Fixture(events.to_path_buf()),
        &[],
        Some(model),
        RuleSelection::Configured,
    )?;
    Ok(replay_lines(&outcome))
}

/// The expected lines of a snapshot, one JSON value per non-empty line.
fn read_expected(content: &Content, expected: &Path) -> Result<Vec<Value>, String> {
    let (expected, file) = open_inside(content, expected)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_FIXTURE_BYTES), &mut text)
        .map_err(|e| format!("cannot read `{}`: {e}", expected.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", expected.display(), i + 1))
        })
        .collect()
}

/// What `palisade test --update` did with one fixture snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotUpdate {
    /// The expected file already said what the engine does; it was not touched.
    Unchanged(PathBuf),
    /// The expected file was rewritten with what the engine does now.
    Rewritten(PathBuf),
    /// The fixture could not be replayed or the expected file not written; nothing was changed.
    Failed(PathBuf, String),
}

/// Rewrites each selected `tests/fixtures/NAME.expected.jsonl` whose lines differ from what the
/// engine now makes of `NAME.jsonl`; files that already agree are left alone (an expected file
/// that does not parse counts as differing). Each file is replaced whole through a temporary
/// file beside it, so an interrupted update leaves the old expectation, never half a new one.
pub fn update_snapshots(
    content: &Arc<Content>,
    filter: Option<&str>,
) -> Result<Vec<SnapshotUpdate>, TestRunError> {
    let model = Stages::from_content(content)?.anomaly;
    let mut updates = Vec::new();
    for (events, expected) in fixture_snapshots(content) {
        let name = content.resolve(&events).display().to_string();
        if filter.is_some_and(|f| !"fixture".contains(f) && !name.contains(f)) {
            continue;
        }
        let shown = content.resolve(&expected);
        let got = match snapshot_lines(content, &model, &events) {
            Ok(got) => got,
            Err(problem) => {
                updates.push(SnapshotUpdate::Failed(shown, problem));
                continue;
            }
        };
        if read_expected(content, &expected).is_ok_and(|want| want == got) {
            updates.push(SnapshotUpdate::Unchanged(shown));
            continue;
        }
        updates.push(match write_expected(content, &expected, &got) {
            Ok(()) => SnapshotUpdate::Rewritten(shown),
            Err(problem) => SnapshotUpdate::Failed(shown, problem),
        });
    }
    Ok(updates)
}

/// Writes the expected lines to `expected` (inside the content directory, symbolic links
/// followed and checked as for reading) through a temporary file renamed over it.
fn write_expected(content: &Content, expected: &Path, lines: &[Value]) -> Result<(), String> {
    // Reading checks the path the same way a test does: inside the content, a regular file.
    let (shown, file) = open_inside(content, expected)?;
    drop(file);
    let cannot = |e: std::io::Error| format!("cannot write `{}`: {e}", shown.display());
    let real = shown.canonicalize().map_err(cannot)?;
    let mut text = String::new();
    for line in lines {
        text.push_str(&line.to_string());
        text.push('\n');
    }
    let file_name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = real.with_file_name(format!(".{file_name}.update"));
    std::fs::write(&temporary, text).map_err(cannot)?;
    std::fs::rename(&temporary, &real).map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        cannot(e)
    })
}
