//! `palisade diff`: the impact of a content change before it merges.
//!
//! The same recorded events go through two sets of content, the *base* (a git revision or a
//! directory) and the *head* (the working tree), one event at a time through both, and what
//! each side decided for the event is compared: detections per rule and planned steps per
//! playbook, gained and lost, with a few examples each.
//!
//! ```text
//! corpus ──► event (normalized once) ──┬─► base Pipeline ──► Outcome ──┐
//!                                      └─► head Pipeline ──► Outcome ──┴─► compare ──► Impact
//! ```
//!
//! Only planning runs: a [`Pipeline`] decides and plans, it never executes a step, opens the
//! state database or talks to Redis, so nothing here can act. The two sides differ only by
//! their content: each batch of events (one test case, or one file) starts both sides with a
//! fresh tracker and fresh correlation windows, both score with the head's anomaly model, and
//! every event is normalized once and handed to both.

pub mod corpus;
pub mod report;
pub mod revision;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::anomaly::AnomalyHandle;
use crate::content::Content;
use crate::decision::ActionRecord;
use crate::detection::Detection;
use crate::event::Event;
use crate::intel::IntelHandle;
use crate::pipeline::{Outcome, Pipeline, PipelineError, Stages};
use crate::sources::Intake;
use crate::sources::jsonl::JsonlReader;

pub use corpus::{CorpusCase, default_files, test_cases};

/// How many examples each rule or playbook keeps per direction unless told otherwise.
pub const DEFAULT_EXAMPLES: usize = 3;

/// The longest event value an example quotes; longer ones are cut (a command line can be
/// kilobytes, and a pull-request comment has a size limit).
const MAX_FIELD_CHARS: usize = 160;

/// One side of the comparison: loaded, validated content and how to name it.
pub struct Side {
    /// `origin/main (1a2b3c4)`, `working tree`, or a directory.
    pub label: String,
    pub content: Arc<Content>,
    /// For content materialized into a scratch directory: that directory and the name shown
    /// instead of it (`origin/main:`), so no example names a temporary path.
    pub shown_as: Option<(PathBuf, String)>,
}

impl Side {
    /// A path under this side's content as people should read it.
    pub fn show(&self, path: &Path) -> String {
        match &self.shown_as {
            Some((root, name)) => match path.strip_prefix(root) {
                Ok(rest) => format!("{name}:{}", rest.display()),
                Err(_) => path.display().to_string(),
            },
            None => path.display().to_string(),
        }
    }
}

/// Why the comparison could not run.
#[derive(Debug, thiserror::Error)]
pub enum ImpactError {
    #[error("{side}: {source}")]
    Pipeline {
        side: &'static str,
        #[source]
        source: PipelineError,
    },
    /// A test case's indicators that do not make a matcher (the case fails `palisade test`).
    #[error("{side}: {message}")]
    Intel { side: &'static str, message: String },
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Counts of one kind of outcome on both sides, and what changed between them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub base: u64,
    pub head: u64,
    /// Produced by the head for an event where the base did not produce it.
    pub gained: u64,
    /// Produced by the base for an event where the head no longer does.
    pub lost: u64,
}

impl Counts {
    pub fn changed(&self) -> bool {
        self.gained > 0 || self.lost > 0
    }
}

/// Where an example's event came from and what it was, in a few fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRef {
    pub id: String,
    /// `events/pr.jsonl:3`, or the test case (`rules/x.rhai:40 rule-id › case name, event 1`).
    pub origin: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The fields a reader needs to recognise the event (host, process, address, query...).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// A detection one side produced and the other did not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectionExample {
    pub event: EventRef,
    pub title: String,
    pub severity: crate::detection::Severity,
}

/// A planned step one side produced and the other did not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionExample {
    pub event: EventRef,
    pub rule: String,
    pub step: String,
    pub action: &'static str,
    pub target: String,
    pub status: crate::decision::ActionStatus,
}

/// Examples of what was gained and what was lost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Examples<T> {
    pub gained: Vec<T>,
    pub lost: Vec<T>,
}

impl<T> Default for Examples<T> {
    fn default() -> Self {
        Examples {
            gained: Vec::new(),
            lost: Vec::new(),
        }
    }
}

/// One rule's detections on both sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleImpact {
    pub rule: String,
    #[serde(flatten)]
    pub detections: Counts,
    pub examples: Examples<DetectionExample>,
}

/// One playbook's planned steps on both sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaybookImpact {
    pub playbook: String,
    #[serde(flatten)]
    pub actions: Counts,
    pub examples: Examples<ActionExample>,
}

/// What was replayed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CorpusSummary {
    /// Test cases whose events were replayed (each in its own batch).
    pub cases: u64,
    /// JSON-lines files replayed, as named.
    pub files: Vec<String>,
    /// Events that went through both sides.
    pub events: u64,
    /// Lines (and test events) that did not become events, per reason.
    pub rejected: BTreeMap<String, u64>,
}

impl CorpusSummary {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// Everything both sides did, side by side.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub detections: Counts,
    pub actions: Counts,
    /// Events for which the two sides decided anything differently.
    pub events_changed: u64,
}

/// The report of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Impact {
    pub base: String,
    pub head: String,
    pub corpus: CorpusSummary,
    pub totals: Totals,
    /// Every rule that produced a detection on either side, by id.
    pub rules: Vec<RuleImpact>,
    /// Every playbook that planned a step on either side, by id.
    pub playbooks: Vec<PlaybookImpact>,
}

impl Impact {
    /// Whether the head decides anything differently from the base on this corpus.
    pub fn changed(&self) -> bool {
        self.totals.detections.changed() || self.totals.actions.changed()
    }
}

/// The key a planned step is compared by: the same step with another target or another status
/// (queued for approval instead of planned, refused instead of skipped) is a different decision.
type StepKey = (Arc<str>, String, &'static str, String, &'static str);

struct Tally<T> {
    counts: Counts,
    examples: Examples<T>,
}

impl<T> Tally<T> {
    /// Counts what the base (`was`) and the head (`now`) produced for one event, and what the
    /// head gained or lost beyond the other, keeping up to `examples` of each. Whether it
    /// changed.
    fn add<S>(&mut self, was: &[S], now: &[S], examples: usize, example: impl Fn(&S) -> T) -> bool {
        self.counts.base += was.len() as u64;
        self.counts.head += now.len() as u64;
        let (extra, count, kept) = if now.len() > was.len() {
            (
                &now[was.len()..],
                &mut self.counts.gained,
                &mut self.examples.gained,
            )
        } else if was.len() > now.len() {
            (
                &was[now.len()..],
                &mut self.counts.lost,
                &mut self.examples.lost,
            )
        } else {
            return false;
        };
        *count += extra.len() as u64;
        kept.extend(
            extra
                .iter()
                .take(examples.saturating_sub(kept.len()))
                .map(example),
        );
        true
    }
}

impl<T> Default for Tally<T> {
    fn default() -> Self {
        Tally {
            counts: Counts::default(),
            examples: Examples::default(),
        }
    }
}

/// Runs batches of events through both sides and accumulates the [`Impact`].
pub struct Comparison<'a> {
    base: &'a Side,
    head: &'a Side,
    /// The model both sides score with (the head's), for events outside `anomaly` test cases.
    model: AnomalyHandle,
    /// The model `anomaly: true` test cases score with, as `palisade test` chooses it.
    case_model: AnomalyHandle,
    examples: usize,
    corpus: CorpusSummary,
    events_changed: u64,
    rules: BTreeMap<Arc<str>, Tally<DetectionExample>>,
    playbooks: BTreeMap<Arc<str>, Tally<ActionExample>>,
    base_out: Outcome,
    head_out: Outcome,
}

impl<'a> Comparison<'a> {
    /// `examples`: how many examples each rule and playbook keeps per direction.
    pub fn new(base: &'a Side, head: &'a Side, examples: usize) -> Result<Self, ImpactError> {
        let failed = |source| ImpactError::Pipeline {
            side: "working tree",
            source,
        };
        // The head's model for both sides: a model change is not a content change this
        // command can judge, and one model keeps the comparison about the rules.
        let model = Stages::from_content(&head.content).map_err(failed)?.anomaly;
        let config = &head.content.config.anomaly;
        let case_model = crate::anomaly::load_optional(
            &head
                .content
                .resolve(&crate::anomaly::model_or_example(config)),
        )
        .map_err(|e| failed(PipelineError::Model(e)))?
        .map(|m| AnomalyHandle::new(Some(m), config.threshold))
        .unwrap_or_default();
        Ok(Comparison {
            base,
            head,
            model,
            case_model,
            examples,
            corpus: CorpusSummary::default(),
            events_changed: 0,
            rules: BTreeMap::new(),
            playbooks: BTreeMap::new(),
            base_out: Outcome::default(),
            head_out: Outcome::default(),
        })
    }

    /// Both sides' pipelines for one batch: fresh tracker and correlation windows each, the
    /// given model and matcher (built per side, against the side's own warninglists).
    fn pipelines(
        &self,
        model: &AnomalyHandle,
        intel: impl Fn(&Content) -> Result<IntelHandle, String>,
    ) -> Result<(Pipeline, Pipeline), ImpactError> {
        let build = |side: &Side, name: &'static str| {
            let content = &side.content;
            let stages = Stages {
                anomaly: model.clone(),
                learner: None,
                tracker: Stages::fresh_tracker(content),
                correlation: Some(Stages::fresh_correlation(content)),
            };
            let matcher = intel(content).map_err(|message| ImpactError::Intel {
                side: name,
                message,
            })?;
            // Planned as `palisade test` plans: as if the engine acts (nothing here executes).
            Pipeline::with_stages(content.clone(), false, matcher, stages)
                .map_err(|source| ImpactError::Pipeline { side: name, source })
        };
        Ok((build(self.base, "base")?, build(self.head, "working tree")?))
    }

    /// Replays one test case's events (with its own indicators) through both sides.
    pub fn run_case(&mut self, case: &CorpusCase<'_>) -> Result<(), ImpactError> {
        let events = match case_events(case) {
            Ok(events) => events,
            Err(problem) => {
                // The case fails `palisade test` too; it is counted, not fatal.
                tracing::warn!("{}: {problem}; its events are left out", case.label);
                *self
                    .corpus
                    .rejected
                    .entry("bad_test_case".into())
                    .or_insert(0) += 1;
                return Ok(());
            }
        };
        let model = if case.case.anomaly {
            self.case_model.clone()
        } else {
            AnomalyHandle::default()
        };
        let indicators = &case.case.intel;
        let (mut base, mut head) = match self.pipelines(&model, |content| {
            crate::testing::case_intel(content, indicators)
        }) {
            Ok(pipelines) => pipelines,
            Err(ImpactError::Intel { message, .. }) => {
                tracing::warn!("{}: {message}; its events are left out", case.label);
                *self
                    .corpus
                    .rejected
                    .entry("bad_test_case".into())
                    .or_insert(0) += 1;
                return Ok(());
            }
            Err(other) => return Err(other),
        };
        self.corpus.cases += 1;
        for (i, event) in events.iter().enumerate() {
            let origin = format!("{}, event {}", case.label, i + 1);
            self.step(&mut base, &mut head, event, &origin);
        }
        Ok(())
    }

    /// Replays one JSON-lines file through both sides, normalizing each line once with
    /// `intake` (as `palisade replay` does). `shown` names the file in examples; `progress` is
    /// told the number of events replayed so far every few thousand events.
    pub fn run_file(
        &mut self,
        path: &Path,
        shown: &str,
        intake: &mut Intake,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), ImpactError> {
        let read_failed = |source| ImpactError::Read {
            path: shown.to_string(),
            source,
        };
        let mut reader = JsonlReader::open(path).map_err(read_failed)?;
        let model = self.model.clone();
        // No indicators: the state database is not opened (see docs/operations.md).
        let (mut base, mut head) = self.pipelines(&model, |_| Ok(IntelHandle::default()))?;
        self.corpus.files.push(shown.to_string());
        while let Some(line) = reader.next_line().map_err(read_failed)? {
            let Ok(event) = intake.accept_line(&shown, &line) else {
                continue;
            };
            let origin = format!("{shown}:{}", line.number);
            self.step(&mut base, &mut head, &event, &origin);
            if self.corpus.events.is_multiple_of(5_000) {
                progress(self.corpus.events);
            }
        }
        Ok(())
    }

    /// Adds the intake's rejects to the report.
    pub fn count_rejected(&mut self, intake: &Intake) {
        for (kind, count) in intake.rejected() {
            *self
                .corpus
                .rejected
                .entry(kind.as_str().to_string())
                .or_insert(0) += count;
        }
    }

    fn step(&mut self, base: &mut Pipeline, head: &mut Pipeline, event: &Event, origin: &str) {
        self.base_out.clear();
        self.head_out.clear();
        base.process(event, &mut self.base_out);
        head.process(event, &mut self.head_out);
        self.corpus.events += 1;
        let base_out = std::mem::take(&mut self.base_out);
        let head_out = std::mem::take(&mut self.head_out);
        let changed_detections = self.compare_detections(event, origin, &base_out, &head_out);
        let changed_actions = self.compare_actions(event, origin, &base_out, &head_out);
        if changed_detections || changed_actions {
            self.events_changed += 1;
        }
        self.base_out = base_out;
        self.head_out = head_out;
    }

    fn compare_detections(
        &mut self,
        event: &Event,
        origin: &str,
        base: &Outcome,
        head: &Outcome,
    ) -> bool {
        let (base, head) = (by_rule(base), by_rule(head));
        let mut changed = false;
        let rules: std::collections::BTreeSet<&Arc<str>> = base.keys().chain(head.keys()).collect();
        for rule in rules {
            let was = base.get(rule).map_or(&[][..], Vec::as_slice);
            let now = head.get(rule).map_or(&[][..], Vec::as_slice);
            let tally = self.rules.entry(rule.clone()).or_default();
            changed |= tally.add(was, now, self.examples, |d| DetectionExample {
                event: event_ref(event, origin),
                title: crate::text::inert(&d.title).into_owned(),
                severity: d.severity,
            });
        }
        changed
    }

    fn compare_actions(
        &mut self,
        event: &Event,
        origin: &str,
        base: &Outcome,
        head: &Outcome,
    ) -> bool {
        let (base, head) = (by_step(base), by_step(head));
        let keys: std::collections::BTreeSet<&StepKey> = base.keys().chain(head.keys()).collect();
        let mut changed = false;
        for key in keys {
            let was = base.get(key).map_or(&[][..], Vec::as_slice);
            let now = head.get(key).map_or(&[][..], Vec::as_slice);
            let tally = self.playbooks.entry(key.0.clone()).or_default();
            changed |= tally.add(was, now, self.examples, |a| ActionExample {
                event: event_ref(event, origin),
                rule: a.rule.to_string(),
                step: a.step.clone(),
                action: a.action,
                target: cut(&a.target),
                status: a.status,
            });
        }
        changed
    }

    /// The report.
    pub fn finish(self) -> Impact {
        let mut totals = Totals {
            events_changed: self.events_changed,
            ..Totals::default()
        };
        let add = |sum: &mut Counts, c: &Counts| {
            sum.base += c.base;
            sum.head += c.head;
            sum.gained += c.gained;
            sum.lost += c.lost;
        };
        let rules: Vec<RuleImpact> = self
            .rules
            .into_iter()
            .map(|(rule, tally)| {
                add(&mut totals.detections, &tally.counts);
                RuleImpact {
                    rule: rule.to_string(),
                    detections: tally.counts,
                    examples: tally.examples,
                }
            })
            .collect();
        let playbooks: Vec<PlaybookImpact> = self
            .playbooks
            .into_iter()
            .map(|(playbook, tally)| {
                add(&mut totals.actions, &tally.counts);
                PlaybookImpact {
                    playbook: playbook.to_string(),
                    actions: tally.counts,
                    examples: tally.examples,
                }
            })
            .collect();
        Impact {
            base: self.base.label.clone(),
            head: self.head.label.clone(),
            corpus: self.corpus,
            totals,
            rules,
            playbooks,
        }
    }
}

/// An event's detections, per rule, in the order they were made.
fn by_rule(outcome: &Outcome) -> BTreeMap<Arc<str>, Vec<&Detection>> {
    let mut found: BTreeMap<Arc<str>, Vec<&Detection>> = BTreeMap::new();
    for detection in &outcome.detections {
        found
            .entry(detection.rule.clone())
            .or_default()
            .push(detection);
    }
    found
}

/// An event's planned steps, per decision.
fn by_step(outcome: &Outcome) -> BTreeMap<StepKey, Vec<&ActionRecord>> {
    let mut found: BTreeMap<StepKey, Vec<&ActionRecord>> = BTreeMap::new();
    for action in &outcome.actions {
        found
            .entry((
                action.playbook.clone(),
                action.step.clone(),
                action.action,
                action.target.clone(),
                action.status.as_str(),
            ))
            .or_default()
            .push(action);
    }
    found
}

/// A case's events, made as `palisade test` makes them.
fn case_events(case: &CorpusCase<'_>) -> Result<Vec<Event>, String> {
    match &case.case.input {
        crate::cases::TestInput::Events(values) => values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                crate::testing::inline_event(value).map_err(|e| format!("event {}: {e}", i + 1))
            })
            .collect(),
        crate::cases::TestInput::Fixture(path) => crate::testing::read_fixture(case.from, path),
    }
}

/// The event as an example shows it: its id, where it came from and its telling fields, made
/// inert and cut to a readable length.
fn event_ref(event: &Event, origin: &str) -> EventRef {
    let mut fields = serde_json::Map::new();
    let mut put = |name: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            fields.insert(name.to_string(), serde_json::Value::String(cut(&value)));
        }
    };
    put("host", event.host.clone());
    put("user", event.user.clone());
    put("name", event.name.clone());
    put("parent_name", event.parent_name.clone());
    put("pid", event.pid.map(|p| p.to_string()));
    put("cmdline", event.cmdline.clone());
    put("remote_ip", event.remote_ip.map(|ip| ip.to_string()));
    put("remote_port", event.remote_port.map(|p| p.to_string()));
    put("query_name", event.query_name.clone());
    put("source_ip", event.source_ip.map(|ip| ip.to_string()));
    put("outcome", event.outcome.clone());
    EventRef {
        id: cut(&event.id),
        origin: crate::text::inert(origin).into_owned(),
        kind: event.kind.as_str(),
        fields,
    }
}

/// `text` made inert, at most [`MAX_FIELD_CHARS`] characters (cut ones end in `…`).
fn cut(text: &str) -> String {
    let inert = crate::text::inert(text);
    if inert.chars().count() <= MAX_FIELD_CHARS {
        return inert.into_owned();
    }
    let mut short: String = inert.chars().take(MAX_FIELD_CHARS - 1).collect();
    short.push('…');
    short
}
