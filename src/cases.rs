//! The test cases authors embed in rules, playbooks and Sigma sidecars: events in, expected
//! detections and actions out. Plain data read by the files that carry them; the runner that
//! executes them (`palisade test`) sits above the pipeline and uses this module, not the reverse.

use std::path::{Component, Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One embedded test case.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    pub name: String,
    pub input: TestInput,
    pub expect: Expectation,
    /// Indicators the case's matcher holds (instead of the state database).
    pub intel: Vec<TestIndicator>,
    /// Whether the content's anomaly model scores the events (the tracker always runs, fresh
    /// for each case, on the events' own timestamps).
    pub anomaly: bool,
    /// The rule or playbook file that holds the case, and the case's line in it.
    pub file: PathBuf,
    pub line: usize,
}

/// An indicator a test case puts in its own matcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TestIndicator {
    /// An address, range, domain, URL or hash.
    pub value: String,
    #[serde(default = "test_source")]
    pub source: String,
    #[serde(default = "test_confidence")]
    pub confidence: u8,
    #[serde(default = "test_severity")]
    pub severity: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat: Option<String>,
    /// For domains: whether subdomains match (default true).
    #[serde(default = "yes")]
    pub subdomains: bool,
}

fn test_source() -> String {
    "test".into()
}
fn test_confidence() -> u8 {
    80
}
fn test_severity() -> u8 {
    70
}
fn yes() -> bool {
    true
}

/// The events a case feeds in.
#[derive(Debug, Clone, PartialEq)]
pub enum TestInput {
    /// Events written inline, in either input shape. A missing `timestamp` is filled in.
    Events(Vec<serde_json::Value>),
    /// A JSON-lines file, relative to the content directory (e.g. `tests/fixtures/x.jsonl`).
    Fixture(PathBuf),
}

impl TestInput {
    /// A fixture input, if its path is one a test may name (see [`check_fixture_path`]).
    pub fn fixture(path: PathBuf) -> Result<TestInput, FixtureError> {
        check_fixture_path(&path)?;
        Ok(TestInput::Fixture(path))
    }
}

/// Largest fixture file a test reads, in bytes: a fixture is a handful of events, and a path to a
/// device or a huge file must not stall `palisade test`.
pub const MAX_FIXTURE_BYTES: u64 = 16 * 1024 * 1024;

/// A fixture path must be relative to the content directory and stay inside it: no absolute
/// path (`/dev/zero`), no `..`. The runner checks again, on the real file, for symbolic links
/// that lead out of the directory.
pub fn check_fixture_path(path: &Path) -> Result<(), FixtureError> {
    if path.as_os_str().is_empty() {
        return Err(FixtureError::Empty);
    }
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(FixtureError::LeavesContent(path.to_path_buf())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(FixtureError::Absolute(path.to_path_buf()));
            }
        }
    }
    Ok(())
}

/// A fixture path a test may not name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FixtureError {
    #[error("`fixture` is empty; name a file such as `tests/fixtures/x.jsonl`")]
    Empty,
    #[error(
        "fixture `{}` leaves the content directory (`..`); fixtures are files inside it, such as `tests/fixtures/x.jsonl`",
        .0.display()
    )]
    LeavesContent(PathBuf),
    #[error(
        "fixture `{}` is an absolute path; fixtures are relative to the content directory, such as `tests/fixtures/x.jsonl`",
        .0.display()
    )]
    Absolute(PathBuf),
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// Rule tests: whether the rule under test fires (on any of the events), and nothing else.
    Fires(bool),
    /// Rule tests: the rule fires, and its detection has these fields (`title`, `severity`,
    /// `entity`, ...), compared as JSON.
    Detection(serde_json::Map<String, serde_json::Value>),
    /// Playbook tests: the detections (rule ids) and this playbook's actions, in order.
    Outcome(ExpectedOutcome),
}

impl Expectation {
    pub fn fires(fires: bool) -> Expectation {
        Expectation::Fires(fires)
    }
}

/// A playbook test's expected outcome. A list that is left out is not checked; an empty list
/// means "nothing".
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ExpectedOutcome {
    /// Rule ids of the detections, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detections: Option<Vec<String>>,
    /// This playbook's actions, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<ExpectedAction>>,
}

/// One expected action; fields left out are not compared.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ExpectedAction {
    /// The step id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The action name, e.g. `process.kill`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The rendered target, e.g. `4242` or `185.12.33.4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `planned`, `dry_run`, `skipped`, `refused`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixture_path_that_leaves_the_content_is_refused_by_kind() {
        assert_eq!(
            check_fixture_path(Path::new("tests/fixtures/x.jsonl")),
            Ok(())
        );
        assert_eq!(check_fixture_path(Path::new("")), Err(FixtureError::Empty));
        assert_eq!(
            check_fixture_path(Path::new("tests/../../etc/passwd")),
            Err(FixtureError::LeavesContent(PathBuf::from(
                "tests/../../etc/passwd"
            )))
        );
        let absolute = check_fixture_path(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(absolute, FixtureError::Absolute(PathBuf::from("/dev/zero")));
        assert!(
            absolute
                .to_string()
                .starts_with("fixture `/dev/zero` is an absolute path"),
            "{absolute}"
        );
    }
}
