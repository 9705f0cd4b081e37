//! Problems found in rules, playbooks and config, each pointing at a file, line and column.
//!
//! Every loader collects all of its problems into [`Diagnostics`] instead of stopping at the
//! first, so one `palisade validate` run shows an author everything to fix.

mod yaml_document;
mod yaml_path;

pub use yaml_document::{
    MAX_YAML_DEPTH, TextType, locate_key, parse_yaml, parse_yaml_checking, strip_bom,
};
pub use yaml_path::{PathSegment, YamlPath, locate};

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A position in a source file, 1-based like editors show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    pub const START: Position = Position { line: 1, column: 1 };

    pub fn new(line: usize, column: usize) -> Position {
        Position {
            line: line.max(1),
            column: column.max(1),
        }
    }
}

/// How bad a problem is: an error fails validation; a warning is shown and the content still
/// loads (a read of an event field the model does not know may be a field a sensor sends).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Error,
    Warning,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
        }
    }

    fn is_error(&self) -> bool {
        *self == Level::Error
    }
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file as the user named it (relative to the content directory).
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// A stable, greppable identifier of the kind of problem, e.g. `unknown-action`.
    pub code: &'static str,
    pub message: String,
    /// Where in the file's structure the problem is, outermost first (`playbook contain-c2`,
    /// `step block`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<String>,
    /// The offending line of source text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_line: Option<String>,
    /// Left out of JSON for errors, so the output for errors is as it always was.
    #[serde(skip_serializing_if = "Level::is_error")]
    pub level: Level,
}

impl Diagnostic {
    /// A problem at `position` in `file`, whose text is `source` (used to quote the line).
    pub fn at(
        file: &Path,
        source: &str,
        position: Position,
        code: &'static str,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            file: file.to_path_buf(),
            line: position.line,
            column: position.column,
            code,
            message: message.into(),
            context: Vec::new(),
            source_line: source
                .lines()
                .nth(position.line.saturating_sub(1))
                .and_then(|line| quoted_line(line, position.column)),
            level: Level::Error,
        }
    }

    /// The same problem as a warning.
    pub fn warning(mut self) -> Diagnostic {
        self.level = Level::Warning;
        self
    }

    /// A problem with a whole file (it cannot be read, say).
    pub fn file(file: &Path, code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(file, "", Position::START, code, message)
    }

    pub fn with_context(mut self, context: impl Into<String>) -> Diagnostic {
        self.context.push(context.into());
        self
    }

    /// `file:line:col: message`, then the source line with a caret under the column.
    pub fn render(&self) -> String {
        self.render_as(self.level.as_str())
    }

    /// As [`Diagnostic::render`], with another word than `error` before the code (a Sigma rule
    /// in a community folder that is `refused`, say).
    pub fn render_as(&self, level: &str) -> String {
        let mut out = format!(
            "{}:{}:{}: {level}[{}]: {}",
            self.file.display(),
            self.line,
            self.column,
            self.code,
            self.message
        );
        if let Some(line) = &self.source_line {
            let number = self.line.to_string();
            let gutter = " ".repeat(number.len());
            // Columns count characters; tabs keep their width by being copied into the caret line.
            let pad: String = line
                .chars()
                .take(self.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let _ = write!(out, "\n {number} | {line}\n {gutter} | {pad}^");
        }
        if !self.context.is_empty() {
            let _ = write!(out, "\n   = in {}", self.context.join(", "));
        }
        out
    }
}

/// All problems found in one run, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many are errors (the rest are warnings).
    pub fn errors(&self) -> usize {
        self.0.iter().filter(|d| d.level == Level::Error).count()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// Sorted by file, then position, so output is stable whatever order loaders ran in.
    pub fn sorted(mut self) -> Diagnostics {
        self.0.sort_by(|a, b| {
            (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message))
        });
        self
    }

    pub fn render(&self) -> String {
        self.0
            .iter()
            .map(Diagnostic::render)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The closest of `candidates` to `word`, when it is close enough to be a likely typo. The one
/// edit distance behind every "did you mean" (this module is at the bottom of the crate, so
/// every layer may use it).
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edit distance where swapping two neighbouring letters counts as one edit (`wiht` → `with`),
/// the most common typo in a key.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// ` (did you mean `x`?)` for the closest of `candidates` to `word`, or nothing when none is
/// close: the one way every "unknown ..." message offers a correction.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    suggest(word, candidates)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// For serde's "unknown variant `x`, expected one of `a`, `b`" (a misspelt enum value in YAML),
/// the correction among the names it lists.
pub fn variant_hint(message: &str) -> String {
    let Some(rest) = message.split_once("unknown variant `").map(|(_, r)| r) else {
        return String::new();
    };
    let Some((word, expected)) = rest.split_once('`') else {
        return String::new();
    };
    let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    did_you_mean(word, names)
}

/// The longest source line quoted under a diagnostic, in characters: a one-line multi-megabyte
/// file must not become a multi-megabyte log line.
const MAX_QUOTED_CHARS: usize = 400;

/// The line to quote: cut after [`MAX_QUOTED_CHARS`] when the caret still falls inside, left
/// out when it would not.
fn quoted_line(line: &str, column: usize) -> Option<String> {
    let line = line.trim_end();
    match line.char_indices().nth(MAX_QUOTED_CHARS) {
        None => Some(line.to_string()),
        Some(_) if column > MAX_QUOTED_CHARS => None,
        Some((cut, _)) => Some(format!("{}…", &line[..cut])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_quotes_the_line_with_a_caret() {
        let source = "id: x\nsteps:\n  - action: firewal.block\n";
        let d = Diagnostic::at(
            Path::new("playbooks/p.yaml"),
            source,
            Position::new(3, 15),
            "unknown-action",
            "unknown action `firewal.block`",
        )
        .with_context("playbook `x`");
        assert_eq!(
            d.render(),
            "playbooks/p.yaml:3:15: error[unknown-action]: unknown action `firewal.block`\n \
             3 |   - action: firewal.block\n   |               ^\n   = in playbook `x`"
        );
    }

    #[test]
    fn suggestions_catch_typos_only() {
        let known = ["firewall.block", "process.kill"];
        assert_eq!(suggest("firewal.block", known), Some("firewall.block"));
        assert_eq!(suggest("email.send", known), None);
        assert_eq!(suggest("wiht", ["with", "when"]), Some("with"));
        assert_eq!(
            suggest("certutil-downlaod", ["certutil-download", "other"]),
            Some("certutil-download")
        );
        assert_eq!(edit_distance("severty", "severity"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn a_misspelt_enum_value_gets_a_correction() {
        assert_eq!(
            variant_hint("mode: unknown variant `shadw`, expected `live` or `shadow`"),
            " (did you mean `shadow`?)"
        );
        assert_eq!(
            variant_hint("unknown variant `x`, expected one of `live`, `shadow`"),
            ""
        );
        assert_eq!(variant_hint("invalid type: map"), "");
    }

    #[test]
    fn warnings_render_as_warnings_and_say_so_in_json() {
        let d = Diagnostic::file(Path::new("rules/r.rhai"), "unknown-event-field", "m").warning();
        assert!(
            d.render()
                .starts_with("rules/r.rhai:1:1: warning[unknown-event-field]")
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["level"], "warning");
        let error = Diagnostic::file(Path::new("rules/r.rhai"), "x", "m");
        assert!(serde_json::to_value(&error).unwrap().get("level").is_none());
    }
}
