//! Test cases for Sigma rules, kept in a sidecar file beside the rule so community rules stay
//! unedited: `rules/x.yml` is tested by `rules/x.tests.yaml`.
//!
//! ```yaml
//! rule: 5f6a...            # the rule's id, name or file stem; optional when x.yml holds one rule
//! tests:
//!   - name: certutil fetching a URL fires
//!     events: [{type: process_create, image: 'C:\Windows\System32\certutil.exe', ...}]
//!     expect: {fires: true}
//!   - name: certutil verifying a certificate does not
//!     events: [...]
//!     expect: {fires: false}
//! ```
//!
//! Each case runs through the same pipeline as `palisade test` runs Rhai rule tests.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cases::{Expectation, TestCase, TestIndicator, TestInput};
use crate::diagnostics::{Diagnostic, Diagnostics, YamlPath, locate};

/// The suffixes that mark a file as a Sigma test sidecar rather than a rule.
pub const SIDECAR_SUFFIXES: [&str; 2] = [".tests.yaml", ".tests.yml"];

/// Whether `path` is a test sidecar (the loader must not read it as a rule).
pub fn is_sidecar(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| SIDECAR_SUFFIXES.iter().any(|s| name.ends_with(s)))
}

/// The sidecar that would test the rule file `rule_file`, if it exists.
pub fn sidecar_for(rule_file: &Path) -> Option<PathBuf> {
    let stem = rule_file.file_stem()?.to_str()?;
    SIDECAR_SUFFIXES
        .iter()
        .map(|suffix| rule_file.with_file_name(format!("{stem}{suffix}")))
        .find(|candidate| candidate.is_file())
}

/// The rule file a sidecar tests: `x.tests.yaml` → `x.yml` or `x.yaml`.
pub fn rule_file_for(sidecar: &Path) -> Option<[PathBuf; 2]> {
    let name = sidecar.file_name()?.to_str()?;
    let stem = SIDECAR_SUFFIXES
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))?;
    Some([
        sidecar.with_file_name(format!("{stem}.yml")),
        sidecar.with_file_name(format!("{stem}.yaml")),
    ])
}

/// A sidecar file as written.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(title = "palisade Sigma rule tests")]
pub struct SidecarSpec {
    /// The rule under test: its id, name or file stem. Optional when the rule file holds one
    /// rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub tests: Vec<SigmaTestSpec>,
}

/// One case.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SigmaTestSpec {
    pub name: String,
    /// Events inline, in any input shape palisade reads; a missing `timestamp` is filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<serde_json::Value>>,
    /// A JSON-lines file of events, relative to the content directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixture: Option<PathBuf>,
    /// Indicators the case's threat-intelligence matcher holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intel: Vec<TestIndicator>,
    pub expect: SigmaExpect,
}

/// What a case expects of the rule under test.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SigmaExpect {
    /// Whether the rule fires on any of the events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fires: Option<bool>,
    /// The rule fires and its detection has these fields (`title`, `severity`, `author`, ...),
    /// compared as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The sidecar's JSON Schema, built once (published by `palisade schema`; it also gives
/// unknown keys their suggestions).
pub fn schema() -> &'static serde_json::Value {
    static SCHEMA: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| {
        serde_json::to_value(schemars::schema_for!(SidecarSpec)).unwrap_or_default()
    });
    &SCHEMA
}

/// A parsed sidecar: which rule it names (if it does) and its cases.
#[derive(Debug, Clone)]
pub struct Sidecar {
    pub path: PathBuf,
    pub rule: Option<String>,
    pub cases: Vec<TestCase>,
}

/// Parses one sidecar, reporting every problem with its position.
pub fn parse_sidecar(path: &Path, source: &str) -> Result<Sidecar, Diagnostics> {
    let (spec, mut problems): (SidecarSpec, Diagnostics) =
        crate::diagnostics::parse_yaml(path, source, schema())?;
    let mut cases = Vec::new();
    let root = YamlPath::root().key("tests");
    for (index, test) in spec.tests.into_iter().enumerate() {
        let at = root.index(index);
        let mut report = |at: &YamlPath, message: String| {
            problems.push(Diagnostic::at(
                path,
                source,
                locate(source, at),
                "sigma-bad-test",
                message,
            ));
        };
        let input = match (test.events, test.fixture) {
            (Some(events), None) => TestInput::Events(events),
            (None, Some(fixture)) => match TestInput::fixture(fixture) {
                Ok(input) => input,
                Err(message) => {
                    report(
                        &at.key("fixture"),
                        format!("test `{}`: {message}", test.name),
                    );
                    continue;
                }
            },
            _ => {
                report(
                    &at,
                    format!(
                        "test `{}` needs exactly one of `events` or `fixture`",
                        test.name
                    ),
                );
                continue;
            }
        };
        let expect = match (test.expect.fires, test.expect.detection) {
            (Some(fires), None) => Expectation::Fires(fires),
            (None, Some(fields)) => Expectation::Detection(fields),
            (Some(true), Some(fields)) => Expectation::Detection(fields),
            _ => {
                report(
                    &at.key("expect"),
                    format!(
                        "test `{}` expects nothing: give `fires: true|false` or `detection: {{...}}`",
                        test.name
                    ),
                );
                continue;
            }
        };
        cases.push(TestCase {
            name: test.name,
            input,
            expect,
            intel: test.intel,
            anomaly: false,
            file: path.to_path_buf(),
            line: locate(source, &at).line,
        });
    }
    if problems.is_empty() {
        Ok(Sidecar {
            path: path.to_path_buf(),
            rule: spec.rule,
            cases,
        })
    } else {
        Err(problems)
    }
}
