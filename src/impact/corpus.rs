//! The default corpus: the events the content repository already records.
//!
//! - every test case's events (Rhai rules, Sigma rules, playbooks) of *both* sides, each case
//!   once even when both sides carry it, so a case the change adds or removes still counts;
//! - every `*.jsonl` file under `events/` and `tests/fixtures/` of the working tree (folders
//!   included, `*.expected.jsonl` snapshots left out: they are outputs, not events).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::cases::TestCase;
use crate::content::Content;

use super::Side;

/// The folders, relative to the content directory, whose JSON-lines files are the default
/// recorded corpus.
pub const CORPUS_DIRS: [&str; 2] = ["events", "tests/fixtures"];

/// How deep the corpus folders are searched (a link loop cannot make it endless either way:
/// links to folders are not followed).
const MAX_DEPTH: usize = 16;

/// One test case, and the content whose directory its fixture path is relative to.
pub struct CorpusCase<'a> {
    /// `rules/x.rhai:40 rule-id › case name` (on the base side, the path carries the
    /// revision's name: `origin/main:rules/x.rhai:40`).
    pub label: String,
    pub case: &'a TestCase,
    pub from: &'a Content,
}

/// Every test case of the head, then those of the base the head does not carry (the same
/// events with the same indicators).
pub fn test_cases<'a>(head: &'a Side, base: &'a Side) -> Vec<CorpusCase<'a>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for side in [head, base] {
        for (owner, case) in cases_of(&side.content) {
            let key = case_key(case);
            if !seen.insert(key) {
                continue;
            }
            out.push(CorpusCase {
                label: format!(
                    "{}:{} {owner} › {}",
                    side.show(&case.file),
                    case.line,
                    case.name
                ),
                case,
                from: &side.content,
            });
        }
    }
    out
}

/// What makes two cases the same replay: their events (keys in any order: a Rhai map and a
/// YAML mapping list them differently), their indicators and whether the model scores them.
fn case_key(case: &TestCase) -> String {
    let input = match &case.input {
        crate::cases::TestInput::Events(values) => {
            let sorted: Vec<serde_json::Value> = values.iter().map(sorted_keys).collect();
            serde_json::Value::Array(sorted).to_string()
        }
        crate::cases::TestInput::Fixture(path) => format!("fixture:{}", path.display()),
    };
    // Debug output is a complete rendering of the indicators.
    format!("{input}|{:?}|{}", case.intel, case.anomaly)
}

fn sorted_keys(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted_keys(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(sorted_keys).collect())
        }
        other => other.clone(),
    }
}

/// A content's test cases with the id of the rule or playbook that carries each.
fn cases_of(content: &Content) -> Vec<(String, &TestCase)> {
    let mut out = Vec::new();
    for rule in &content.rules {
        out.extend(rule.tests.iter().map(|c| (rule.id.to_string(), c)));
    }
    for (rule, case) in &content.sigma.tests {
        out.push((rule.to_string(), case));
    }
    for playbook in &content.playbooks {
        out.extend(playbook.tests.iter().map(|c| (playbook.id.to_string(), c)));
    }
    out
}

/// The recorded files of the default corpus under the content directory `dir`, sorted, as
/// (path to open, path to show).
pub fn default_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    for folder in CORPUS_DIRS {
        // Shown as every other path is: relative to where the command runs.
        let root = crate::content::display_path(dir, Path::new(folder));
        collect(&root, &root, 0, &mut found);
    }
    found.sort();
    found
}

fn collect(dir: &Path, shown: &Path, depth: usize, found: &mut Vec<(PathBuf, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        // The entry's own type: a link is neither followed into nor read as a file.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        let Some(text) = name.to_str() else { continue };
        let path = entry.path();
        if kind.is_dir() && depth < MAX_DEPTH {
            collect(&path, &shown.join(text), depth + 1, found);
        } else if kind.is_file() && text.ends_with(".jsonl") && !text.ends_with(".expected.jsonl") {
            found.push((path, shown.join(text).display().to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_files_leave_out_snapshots_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = dir.path().join("tests/fixtures/deeper");
        std::fs::create_dir_all(&fixtures).unwrap();
        std::fs::create_dir_all(dir.path().join("events")).unwrap();
        std::fs::write(dir.path().join("events/a.jsonl"), "{}\n").unwrap();
        std::fs::write(dir.path().join("tests/fixtures/m.jsonl"), "{}\n").unwrap();
        std::fs::write(dir.path().join("tests/fixtures/m.expected.jsonl"), "{}\n").unwrap();
        std::fs::write(fixtures.join("b.jsonl"), "{}\n").unwrap();
        std::fs::write(fixtures.join("notes.txt"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("events/link.jsonl")).unwrap();
        let shown: Vec<String> = default_files(dir.path())
            .into_iter()
            .map(|(_, shown)| {
                Path::new(&shown)
                    .strip_prefix(dir.path())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            shown,
            [
                "events/a.jsonl",
                "tests/fixtures/deeper/b.jsonl",
                "tests/fixtures/m.jsonl"
            ]
        );
    }
}
