//! Per-rule exceptions: `exceptions/*.yaml` in the content folder, reviewed in git like rules.
//!
//! An exception names one rule (a Rhai or Sigma rule, a Sigma correlation, or a built-in
//! detector) and the events it does not apply to: every field it gives (host, user, process,
//! path) must match. A detection an exception covers is dropped before it is recorded, so it
//! raises no alert and runs no playbook; the pipeline reports it so it is counted. Each
//! exception says why (`reason`), and may expire: from then on it no longer applies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diagnostics::{Diagnostic, Diagnostics, YamlPath, locate};
use crate::event::Event;

/// One file of `exceptions/`, as written.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ExceptionFile {
    pub exceptions: Vec<ExceptionSpec>,
}

/// One exception, as written.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ExceptionSpec {
    /// The rule (or detector) id the exception applies to.
    pub rule: String,
    /// The event's host is one of these.
    #[serde(default)]
    pub host: Option<OneOrMany>,
    /// The event's user is one of these.
    #[serde(default)]
    pub user: Option<OneOrMany>,
    /// The event's process name or image (full path) is one of these.
    #[serde(default)]
    pub process: Option<OneOrMany>,
    /// The event's image is one of these paths; a value ending in `/` or `\` is a folder and
    /// covers everything under it.
    #[serde(default)]
    pub path: Option<OneOrMany>,
    /// Why the detections are expected and benign. Required.
    pub reason: String,
    /// When the exception stops applying: an RFC 3339 date and time (`2026-12-31T00:00:00Z`).
    #[serde(default)]
    pub expires: Option<String>,
    /// Who asked for it.
    #[serde(default)]
    pub author: Option<String>,
}

/// A value or a list of values.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn values(&self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        }
    }
}

/// A loaded exception.
#[derive(Debug, Clone, PartialEq)]
pub struct Exception {
    pub rule: Arc<str>,
    hosts: Vec<String>,
    users: Vec<String>,
    processes: Vec<String>,
    paths: Vec<String>,
    pub reason: String,
    pub expires: Option<jiff::Timestamp>,
    pub author: Option<String>,
    /// The file and line, for reports.
    pub file: PathBuf,
    pub line: usize,
}

fn any_equal(actual: Option<&str>, values: &[String]) -> bool {
    actual.is_some_and(|actual| values.iter().any(|v| actual.eq_ignore_ascii_case(v)))
}

impl Exception {
    /// Whether this exception covers `event` at `now`.
    pub fn covers(&self, event: &Event, now: jiff::Timestamp) -> bool {
        if self.expires.is_some_and(|expires| now >= expires) {
            return false;
        }
        (self.hosts.is_empty() || any_equal(event.host.as_deref(), &self.hosts))
            && (self.users.is_empty() || any_equal(event.user.as_deref(), &self.users))
            && (self.processes.is_empty()
                || any_equal(event.name.as_deref(), &self.processes)
                || any_equal(event.image.as_deref(), &self.processes))
            && (self.paths.is_empty()
                || event.image.as_deref().is_some_and(|image| {
                    self.paths.iter().any(|path| {
                        if path.ends_with('/') || path.ends_with('\\') {
                            // `C:\Build\..\Windows\cmd.exe` starts with `C:\Build\` and
                            // is not in it: a path climbing out is never under the folder.
                            super::helpers::starts_with_ignore_case(image, path)
                                && image.get(path.len()..).is_some_and(|rest| {
                                    !rest.split(['/', '\\']).any(|part| part == "..")
                                })
                        } else {
                            image.eq_ignore_ascii_case(path)
                        }
                    })
                }))
    }

    /// `file:line`, for reports.
    pub fn place(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// Every exception of the content, by rule id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exceptions {
    by_rule: HashMap<Arc<str>, Vec<Arc<Exception>>>,
}

impl Exceptions {
    pub fn new(exceptions: Vec<Exception>) -> Exceptions {
        let mut by_rule: HashMap<Arc<str>, Vec<Arc<Exception>>> = HashMap::new();
        for exception in exceptions {
            by_rule
                .entry(exception.rule.clone())
                .or_default()
                .push(Arc::new(exception));
        }
        Exceptions { by_rule }
    }

    pub fn is_empty(&self) -> bool {
        self.by_rule.is_empty()
    }

    /// Every exception, sorted by file and line.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Exception>> {
        let mut all: Vec<&Arc<Exception>> = self.by_rule.values().flatten().collect();
        all.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        all.into_iter()
    }

    /// The first exception that covers a detection of `rule` on `event` at `now`, if any.
    pub fn covering(
        &self,
        rule: &str,
        event: &Event,
        now: jiff::Timestamp,
    ) -> Option<&Arc<Exception>> {
        self.by_rule
            .get(rule)?
            .iter()
            .find(|exception| exception.covers(event, now))
    }
}

/// The schema of an exceptions file, built once.
pub fn schema() -> &'static serde_json::Value {
    static SCHEMA: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| {
        serde_json::to_value(schemars::schema_for!(ExceptionFile))
            .unwrap_or(serde_json::Value::Null)
    });
    &SCHEMA
}

/// Parses and validates one exceptions file against the known rule ids (`rules`), at `now`.
/// Returns the exceptions and warnings (an exception already expired), or every problem.
pub fn load_exceptions(
    path: &Path,
    source: &str,
    rules: &[&str],
    now: jiff::Timestamp,
) -> Result<(Vec<Exception>, Diagnostics), Diagnostics> {
    let source = crate::diagnostics::strip_bom(source);
    let (file, mut problems): (ExceptionFile, Diagnostics) =
        crate::diagnostics::parse_yaml(path, source, schema())?;
    let mut warnings = Diagnostics::default();
    let mut exceptions = Vec::new();
    for (index, spec) in file.exceptions.into_iter().enumerate() {
        let at = |key: &str| {
            let entry = YamlPath::root().key("exceptions").index(index);
            locate(
                source,
                &if key.is_empty() {
                    entry
                } else {
                    entry.key(key)
                },
            )
        };
        let context = format!("exception {} for `{}`", index + 1, spec.rule);
        let mut problem = |key: &str, code: &'static str, message: String| {
            problems.push(
                Diagnostic::at(path, source, at(key), code, message).with_context(context.clone()),
            );
        };
        if !rules.contains(&spec.rule.as_str()) {
            problem(
                "rule",
                "exception-unknown-rule",
                format!(
                    "there is no rule or detector `{}`{}",
                    spec.rule,
                    crate::diagnostics::did_you_mean(&spec.rule, rules.iter().copied())
                ),
            );
        }
        if spec.reason.trim().is_empty() {
            problem(
                "reason",
                "exception-no-reason",
                "`reason` must say why these detections are expected".into(),
            );
        }
        let fields = [
            ("host", &spec.host),
            ("user", &spec.user),
            ("process", &spec.process),
            ("path", &spec.path),
        ];
        if fields.iter().all(|(_, value)| value.is_none()) {
            problem(
                "",
                "exception-matches-everything",
                "an exception needs at least one of `host`, `user`, `process` or `path`; one without would silence the rule everywhere".into(),
            );
        }
        let mut lists: Vec<Vec<String>> = Vec::new();
        for (key, value) in fields {
            let values = value.as_ref().map(OneOrMany::values).unwrap_or_default();
            if value.is_some() && (values.is_empty() || values.iter().any(|v| v.trim().is_empty()))
            {
                problem(
                    key,
                    "exception-bad-value",
                    format!("`{key}` needs non-empty values"),
                );
            }
            lists.push(values);
        }
        let expires = match &spec.expires {
            None => None,
            Some(text) => match text.trim().parse::<jiff::Timestamp>() {
                Ok(at) => {
                    if at <= now {
                        warnings.push(
                            Diagnostic::at(
                                path,
                                source,
                                at_pos(source, index, "expires"),
                                "exception-expired",
                                format!("this exception expired at {at} and no longer applies; remove it or extend it"),
                            )
                            .with_context(context.clone())
                            .warning(),
                        );
                    }
                    Some(at)
                }
                Err(_) => {
                    problem(
                        "expires",
                        "exception-bad-expires",
                        format!(
                            "`expires` must be an RFC 3339 date and time such as `2026-12-31T00:00:00Z`, not `{text}`"
                        ),
                    );
                    None
                }
            },
        };
        let mut lists = lists.into_iter();
        let mut next = || lists.next().unwrap_or_default();
        exceptions.push(Exception {
            rule: Arc::from(spec.rule.as_str()),
            hosts: next(),
            users: next(),
            processes: next(),
            paths: next(),
            reason: spec.reason,
            expires,
            author: spec.author,
            file: path.to_path_buf(),
            line: at("").line,
        });
    }
    if problems.is_empty() {
        Ok((exceptions, warnings))
    } else {
        problems.extend(warnings);
        Err(problems)
    }
}

fn at_pos(source: &str, index: usize, key: &str) -> crate::diagnostics::Position {
    locate(
        source,
        &YamlPath::root().key("exceptions").index(index).key(key),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    const RULES: [&str; 3] = [
        "anomaly-model",
        "office-spawns-shell",
        "powershell-download-cradle",
    ];

    fn load(source: &str, now: &str) -> Result<(Vec<Exception>, Diagnostics), Diagnostics> {
        load_exceptions(
            Path::new("exceptions/x.yaml"),
            source,
            &RULES,
            now.parse().expect("time"),
        )
    }

    fn detection(rule: &str) -> &str {
        rule
    }

    fn office(host: &str) -> Event {
        let mut event = Event::new("e1", EventKind::ProcessCreate, 0);
        event.host = Some(host.into());
        event.name = Some("cmd.exe".into());
        event.image = Some("C:\\Build\\tools\\cmd.exe".into());
        event.user = Some("svc_build".into());
        event
    }

    #[test]
    fn an_exception_silences_one_host_for_one_rule_until_it_expires() {
        let source = "exceptions:\n  - rule: office-spawns-shell\n    host: [BUILD-01]\n    reason: the build agents run Office macros in CI\n    expires: 2026-06-01T00:00:00Z\n    author: alice\n";
        let (found, warnings) = load(source, "2026-01-01T00:00:00Z").expect("loads");
        assert!(warnings.is_empty());
        let exceptions = Exceptions::new(found);
        let before: jiff::Timestamp = "2026-05-31T23:59:59Z".parse().expect("time");
        let after: jiff::Timestamp = "2026-06-01T00:00:00Z".parse().expect("time");
        let office_rule = detection("office-spawns-shell");
        let covered = exceptions
            .covering(office_rule, &office("build-01"), before)
            .expect("the build host is excepted");
        assert_eq!(covered.author.as_deref(), Some("alice"));
        assert_eq!(covered.place(), "exceptions/x.yaml:2");
        assert!(
            exceptions
                .covering(office_rule, &office("ws-3"), before)
                .is_none(),
            "another host"
        );
        assert!(
            exceptions
                .covering(
                    detection("powershell-download-cradle"),
                    &office("build-01"),
                    before
                )
                .is_none(),
            "another rule"
        );
        assert!(
            exceptions
                .covering(office_rule, &office("build-01"), after)
                .is_none(),
            "expired"
        );
        // Loaded after it expired: it loads (it is harmless) and validate warns.
        let (_, warnings) = load(source, "2026-07-01T00:00:00Z").expect("loads");
        let warning = warnings.iter().next().expect("a warning");
        assert_eq!((warning.line, warning.code), (5, "exception-expired"));
    }

    #[test]
    fn every_field_an_exception_gives_must_match() {
        let source = "exceptions:\n  - rule: office-spawns-shell\n    user: svc_build\n    process: CMD.EXE\n    path: 'c:\\build\\'\n    reason: builds\n";
        let (found, _) = load(source, "2026-01-01T00:00:00Z").expect("loads");
        let exceptions = Exceptions::new(found);
        let now = jiff::Timestamp::now();
        let rule = detection("office-spawns-shell");
        assert!(exceptions.covering(rule, &office("any"), now).is_some());
        let mut other_user = office("any");
        other_user.user = Some("alice".into());
        assert!(exceptions.covering(rule, &other_user, now).is_none());
        let mut climbing = office("any");
        climbing.image = Some("C:\\Build\\..\\Windows\\System32\\cmd.exe".into());
        assert!(
            exceptions.covering(rule, &climbing, now).is_none(),
            "a path climbing out of the folder is not in it"
        );
        let mut elsewhere = office("any");
        elsewhere.image = Some("C:\\Windows\\System32\\cmd.exe".into());
        assert!(exceptions.covering(rule, &elsewhere, now).is_none());
    }

    #[test]
    fn an_exception_naming_an_unknown_rule_is_refused() {
        let source = "exceptions:\n  - rule: office-spawns-shel\n    host: build-01\n    reason: builds\n  - rule: office-spawns-shell\n    reason: ''\n  - rule: anomaly-model\n    host: x\n    reason: r\n    expires: next week\n";
        let problems = load(source, "2026-01-01T00:00:00Z").expect_err("refused");
        let found: Vec<(usize, usize, &str)> = problems
            .iter()
            .map(|d| (d.line, d.column, d.code))
            .collect();
        assert_eq!(
            found,
            [
                (2, 11, "exception-unknown-rule"),
                (6, 13, "exception-no-reason"),
                (5, 5, "exception-matches-everything"),
                (10, 14, "exception-bad-expires"),
            ],
            "{}",
            problems.render()
        );
        assert!(
            problems
                .render()
                .contains("did you mean `office-spawns-shell`?"),
            "{}",
            problems.render()
        );
    }
}
