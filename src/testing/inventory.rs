//! Every rule the content holds, Rhai and Sigma alike, with what `palisade rules list`,
//! `palisade coverage` and the CI gates of `palisade validate --strict` need: its metadata and
//! how many positive and negative test cases it has.

use std::path::PathBuf;

use serde::Serialize;

use crate::attack::{AttackTag, Catalogue, parse_tag};
use crate::cases::{Expectation, TestCase};
use crate::content::Content;
use crate::diagnostics::{Diagnostic, Diagnostics, Level, Position};
use crate::rules::RuleDefinition;
use crate::sigma::SigmaRule;
use crate::sigma::correlation::Correlation;

/// Which engine runs a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleEngine {
    Rhai,
    Sigma,
    /// A Sigma correlation rule (counts other Sigma rules' detections).
    SigmaCorrelation,
}

impl RuleEngine {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleEngine::Rhai => "rhai",
            RuleEngine::Sigma => "sigma",
            RuleEngine::SigmaCorrelation => "sigma-correlation",
        }
    }
}

/// One rule as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleEntry {
    pub id: String,
    /// How people name the rule: a Rhai rule's id; a Sigma rule's `name`, else its file stem
    /// (Sigma ids are UUIDs), as playbook triggers may name it.
    pub name: String,
    pub title: String,
    /// The rule's lifecycle status; see [`status_of`].
    pub status: Option<String>,
    pub severity: String,
    pub engine: RuleEngine,
    /// The event types it reads (`process_create`, ...); for a correlation, those of the rules
    /// it counts.
    pub events: Vec<String>,
    pub tags: Vec<String>,
    /// Test cases expecting the rule to fire.
    pub positive: usize,
    /// Test cases expecting it not to fire.
    pub negative: usize,
    /// For a Sigma rule whose own detections are dropped because a correlation counts them
    /// (without `generate: true`): that correlation, whose cases test this rule too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tested_through: Option<String>,
    /// The file, as diagnostics name it.
    pub file: PathBuf,
    /// Where the rule starts in the file.
    pub line: usize,
    /// Whether the rule is the content's own (its `rules/` folder) rather than from a corpus
    /// folder named in `sigma.folders`; the CI gates hold only the content's own rules.
    pub own: bool,
}

/// A rule of any engine, for the one place that reads its status.
#[derive(Debug, Clone, Copy)]
pub enum RuleRef<'a> {
    Rhai(&'a RuleDefinition),
    Sigma(&'a SigmaRule),
    Correlation(&'a Correlation),
}

/// The lifecycle status shown for a rule: its `status` (`stable` when it names none), and for a
/// Rhai rule that is off, `disabled` instead (its reason is in the rule file).
pub fn status_of(rule: RuleRef<'_>) -> Option<String> {
    match rule {
        RuleRef::Sigma(rule) => rule.status.map(|status| status.to_string()),
        RuleRef::Rhai(rule) if !rule.enabled => Some("disabled".into()),
        RuleRef::Rhai(rule) => Some(rule.status.to_string()),
        RuleRef::Correlation(correlation) => Some(correlation.status.to_string()),
    }
}

/// Whether a case expects the rule under test to fire (a positive case) or not.
pub fn is_positive(case: &TestCase) -> bool {
    match &case.expect {
        Expectation::Fires(fires) => *fires,
        Expectation::Detection(_) => true,
        Expectation::Outcome(_) => false,
    }
}

fn count<'a>(cases: impl Iterator<Item = &'a TestCase>) -> (usize, usize) {
    cases.fold((0, 0), |(pos, neg), case| {
        if is_positive(case) {
            (pos + 1, neg)
        } else {
            (pos, neg + 1)
        }
    })
}

/// Every rule in the content, in the order loaded: Rhai rules, Sigma rules, correlations.
pub fn inventory(content: &Content) -> Vec<RuleEntry> {
    let own_dir = content.resolve(&content.config.content.rules);
    let mut entries = Vec::new();
    for rule in &content.rules {
        let (positive, negative) = count(rule.tests.iter());
        entries.push(RuleEntry {
            id: rule.id.to_string(),
            name: rule.id.to_string(),
            title: rule.title.clone(),
            status: status_of(RuleRef::Rhai(rule)),
            severity: rule.severity.as_str().to_string(),
            engine: RuleEngine::Rhai,
            events: rule.events.iter().map(ToString::to_string).collect(),
            tags: rule.tags.to_vec(),
            positive,
            negative,
            tested_through: None,
            file: rule.path.clone(),
            line: rule.position.line,
            own: true,
        });
    }
    let sigma = &content.sigma;
    let cases_of = |id: &str| {
        count(
            sigma
                .tests
                .iter()
                .filter(move |(rule, _)| &**rule == id)
                .map(|(_, case)| case),
        )
    };
    for rule in &sigma.rules {
        let (positive, negative) = cases_of(&rule.id);
        let through = sigma
            .correlations
            .iter()
            .find(|c| !c.generate && c.rules.iter().any(|r| *r == rule.id));
        entries.push(RuleEntry {
            id: rule.id.to_string(),
            name: rule.name.as_deref().unwrap_or(&rule.stem).to_string(),
            title: rule.title.clone(),
            status: status_of(RuleRef::Sigma(rule)),
            severity: crate::sigma::severity(rule.level).as_str().to_string(),
            engine: RuleEngine::Sigma,
            events: rule.kinds.iter().map(ToString::to_string).collect(),
            tags: rule.tags.clone(),
            positive,
            negative,
            tested_through: through.map(correlation_name),
            file: rule.path.clone(),
            line: rule.position.line,
            own: rule.path.starts_with(&own_dir),
        });
    }
    for correlation in &sigma.correlations {
        let (positive, negative) = cases_of(&correlation.id);
        let mut events: Vec<String> = Vec::new();
        for id in &correlation.rules {
            for kind in sigma
                .rules
                .iter()
                .filter(|r| r.id == *id)
                .flat_map(|r| &r.kinds)
            {
                let kind = kind.to_string();
                if !events.contains(&kind) {
                    events.push(kind);
                }
            }
        }
        entries.push(RuleEntry {
            id: correlation.id.to_string(),
            name: correlation_name(correlation),
            title: correlation.title.clone(),
            status: status_of(RuleRef::Correlation(correlation)),
            severity: correlation.severity.as_str().to_string(),
            engine: RuleEngine::SigmaCorrelation,
            events,
            tags: correlation.tags.to_vec(),
            positive,
            negative,
            tested_through: None,
            file: correlation.path.clone(),
            line: correlation_line(correlation),
            own: correlation.path.starts_with(&own_dir),
        });
    }
    entries
}

/// How people know a correlation: its `name`, else its file's stem, else its id.
fn correlation_name(correlation: &Correlation) -> String {
    correlation
        .name
        .as_deref()
        .or_else(|| correlation.path.file_stem().and_then(|s| s.to_str()))
        .unwrap_or(&correlation.id)
        .to_string()
}

/// The line of the correlation's `id:` in its file (the resolved correlation keeps no
/// position), else 1.
fn correlation_line(correlation: &Correlation) -> usize {
    std::fs::read_to_string(&correlation.path)
        .ok()
        .and_then(|text| {
            text.lines()
                .position(|line| line.contains(&*correlation.id))
                .map(|i| i + 1)
        })
        .unwrap_or(1)
}

/// The CI gates on the content's own rules: each needs a positive and a negative test case,
/// and each `attack.*` tag must name a known ATT&CK technique or tactic (a revoked technique is
/// stale). Problems are errors when `strict`, warnings otherwise; a deprecated technique is
/// always only a warning.
pub fn gates(entries: &[RuleEntry], catalogue: &Catalogue, strict: bool) -> Diagnostics {
    let level = if strict { Level::Error } else { Level::Warning };
    let mut found = Diagnostics::default();
    for entry in entries.iter().filter(|e| e.own) {
        let source = std::fs::read_to_string(&entry.file).unwrap_or_default();
        let start = Position::new(entry.line, 1);
        let context = format!("rule `{}`", entry.name);
        let mut push = |position: Position, code: &'static str, message: String, level: Level| {
            let mut diagnostic = Diagnostic::at(&entry.file, &source, position, code, message)
                .with_context(context.clone());
            diagnostic.level = level;
            found.push(diagnostic);
        };
        if entry.tested_through.is_none() {
            let missing = match (entry.positive, entry.negative) {
                (0, 0) => Some("no test cases"),
                (0, _) => Some("no positive test case, one that expects it to fire"),
                (_, 0) => Some("no negative test case, one that expects it not to fire"),
                _ => None,
            };
            if let Some(missing) = missing {
                let how = match entry.engine {
                    RuleEngine::Rhai => "add it to `let tests = [...]`",
                    RuleEngine::Sigma | RuleEngine::SigmaCorrelation => {
                        "add it to the rule's `.tests.yaml` sidecar"
                    }
                };
                push(
                    start,
                    "rule-untested",
                    format!(
                        "rule `{}` has {missing} ({} positive, {} negative); the CI gate wants at least one of each: {how}",
                        entry.name, entry.positive, entry.negative
                    ),
                    level,
                );
            }
        }
        for tag in &entry.tags {
            let Some(problem) = tag_problem(tag, catalogue) else {
                continue;
            };
            let position = tag_position(&source, entry.line, tag).unwrap_or(start);
            let level = if problem.stale_only {
                Level::Warning
            } else {
                level
            };
            push(position, problem.code, problem.message, level);
        }
    }
    found.sorted()
}

/// What is wrong with one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagProblem {
    pub code: &'static str,
    pub message: String,
    /// Only deprecated: known, still shown, never a gate.
    pub stale_only: bool,
}

/// The problem with an `attack.*` tag, if any (tags of other namespaces are not checked).
pub fn tag_problem(tag: &str, catalogue: &Catalogue) -> Option<TagProblem> {
    let problem = |code, message| {
        Some(TagProblem {
            code,
            message,
            stale_only: false,
        })
    };
    match parse_tag(tag)? {
        AttackTag::Technique(id) => match catalogue.technique(&id) {
            None => {
                let near = crate::diagnostics::did_you_mean(
                    &id,
                    catalogue.techniques.iter().map(|t| t.id.as_str()),
                );
                problem(
                    "attack-unknown-technique",
                    format!(
                        "tag `{tag}`: `{id}` is not an ATT&CK Enterprise {} technique{near}",
                        catalogue.version
                    ),
                )
            }
            Some(technique) if technique.revoked => problem(
                "attack-revoked-technique",
                format!(
                    "tag `{tag}`: `{id}` ({}) was revoked in ATT&CK{}",
                    technique.name,
                    technique
                        .revoked_by
                        .as_deref()
                        .map(|by| format!("; use `attack.{}`", by.to_ascii_lowercase()))
                        .unwrap_or_default()
                ),
            ),
            Some(technique) if technique.deprecated => Some(TagProblem {
                code: "attack-deprecated-technique",
                message: format!(
                    "tag `{tag}`: `{id}` ({}) is deprecated in ATT&CK {}",
                    technique.name, catalogue.version
                ),
                stale_only: true,
            }),
            Some(_) => None,
        },
        AttackTag::GroupOrSoftware(_) => None,
        AttackTag::Name(name) => match catalogue.tactic(&name) {
            Some(_) => None,
            None => {
                let names: Vec<String> = catalogue
                    .tactics
                    .iter()
                    .map(|t| t.shortname.replace('-', "_"))
                    .collect();
                let near =
                    crate::diagnostics::did_you_mean(&name, names.iter().map(String::as_str));
                problem(
                    "attack-unknown-tag",
                    format!(
                        "tag `{tag}` names neither an ATT&CK technique (`attack.t1059.001`) nor a tactic{near}; tactics: {}",
                        names.join(", ")
                    ),
                )
            }
        },
    }
}

/// Where `tag` is written in the rule starting at `line` (the first mention after it).
fn tag_position(source: &str, line: usize, tag: &str) -> Option<Position> {
    source
        .lines()
        .enumerate()
        .skip(line.saturating_sub(1))
        .find_map(|(i, text)| {
            let at = text.find(tag)?;
            Some(Position::new(i + 1, text[..at].chars().count() + 1))
        })
}
