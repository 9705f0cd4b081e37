//! One Sigma file's text into rules, filters, raw correlations and skips, with positions.
//!
//! A file may hold several YAML documents (`---`). Each is parsed on its own with the repo's
//! YAML safeguards (byte-order mark, depth limit, duplicate keys), so a position found in a
//! document is its line in the file plus the document's first line.
//!
//! Order of judgement for a detection rule: a status config does not load, a level below the
//! configured lowest, or a logsource palisade has no events for makes the rule *skipped* (counted,
//! not an error), before its detection is read; a rule that is kept must then parse whole, or it
//! is *refused* with every problem found, each at its file:line:col.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use yaml_serde::Value;

use crate::diagnostics::{
    Diagnostic, Diagnostics, PathSegment, Position, YamlPath, locate, parse_yaml,
};
use crate::event::{EventKind, Field};

use super::SigmaConfig;
use super::ast::{Condition, Item, Level, Search, SearchBody, SigmaRule, Status, ValueTest};
use super::condition;
use super::fields::{FieldNames, FieldProblem};
use super::filter::SigmaFilter;
use super::modifiers::{self, Entry, RawValue};

/// A correlation document, returned as written for the correlation parser.
#[derive(Debug, Clone)]
pub struct RawCorrelation {
    pub path: PathBuf,
    /// Where the document starts in the file.
    pub position: Position,
    /// The document's own text; `position.line - 1` is added to a line found in it.
    pub source: String,
    pub value: Value,
}

/// Why a rule is not loaded although nothing is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// A logsource palisade has no events for, as `product/category/service` (`-` for none).
    Logsource(String),
    /// A status the config does not load.
    Status(Status),
    /// A level below the config's lowest.
    Level(Level),
}

impl SkipReason {
    /// The reason as reports group it: `logsource windows/registry_set/-`, `status experimental`.
    pub fn key(&self) -> String {
        match self {
            SkipReason::Logsource(what) => format!("logsource {what}"),
            SkipReason::Status(status) => format!("status {}", status_name(*status)),
            SkipReason::Level(level) => format!("level {}", level_name(*level)),
        }
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Stable => "stable",
        Status::Test => "test",
        Status::Experimental => "experimental",
        Status::Deprecated => "deprecated",
        Status::Unsupported => "unsupported",
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Informational => "informational",
        Level::Low => "low",
        Level::Medium => "medium",
        Level::High => "high",
        Level::Critical => "critical",
    }
}

/// A document that was read and deliberately not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub position: Position,
    /// The rule's id (or the fallback) and name, so a filter naming a skipped rule still names
    /// a rule that exists.
    pub id: Arc<str>,
    pub name: Option<Arc<str>>,
    pub reason: SkipReason,
}

/// What one document turned out to be.
#[derive(Debug, Clone)]
pub enum Document {
    Rule(Box<SigmaRule>),
    Filter(Box<SigmaFilter>),
    Correlation(Box<RawCorrelation>),
    Skipped(Skipped),
}

/// Everything one file held: its documents, and the problems of the documents refused.
#[derive(Debug, Clone, Default)]
pub struct FileParse {
    pub documents: Vec<Document>,
    /// One entry per refused document: its problems (at least one).
    pub refused: Vec<Diagnostics>,
}

/// Parses every document of one file. `path` is how diagnostics name the file.
pub fn parse_file(path: &Path, source: &str, config: &SigmaConfig) -> FileParse {
    let source = crate::diagnostics::strip_bom(source);
    let mut out = FileParse::default();
    let stem: Arc<str> = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("sigma")
        .into();
    for (index, (first_line, text)) in split_documents(source).into_iter().enumerate() {
        let mut doc = Doc {
            path,
            file: source,
            text: &text,
            offset: first_line,
            names: FieldNames::Sigma,
        };
        let value = match parse_yaml::<Value>(path, &text, &serde_json::Value::Null) {
            Ok((value, _)) => value,
            Err(problems) => {
                out.refused.push(doc.shift(problems));
                continue;
            }
        };
        // `product: palisade` rules name fields as palisade does (`cmdline`, `source_ip`).
        doc.names = FieldNames::for_product(
            value
                .get("logsource")
                .and_then(|l| l.get("product"))
                .and_then(Value::as_str),
        );
        if value.is_null() {
            // A document of only comments, or the empty text after a trailing `---`.
            continue;
        }
        let id_fallback: Arc<str> = if index == 0 {
            stem.clone()
        } else {
            format!("{stem}#{}", index + 1).into()
        };
        match doc.document(&value, config, &stem, &id_fallback) {
            Ok(Some(document)) => out.documents.push(document),
            Ok(None) => {}
            Err(problems) => out.refused.push(problems),
        }
    }
    out
}

/// The file's documents with the 0-based line each starts on. A line that is `---` (possibly
/// followed by a comment or content) starts a new document; `...` ends one.
fn split_documents(source: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut current = String::new();
    let mut ended = false;
    for (index, line) in source.lines().enumerate() {
        let marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if marker {
            if !current.trim().is_empty() {
                docs.push((start, std::mem::take(&mut current)));
            }
            current.clear();
            ended = false;
            start = index;
            // Content after the marker on the same line belongs to the document; keep the
            // line (as blank before it) so columns stay right.
            current.push_str(&" ".repeat(3));
            current.push_str(&line[3..]);
            current.push('\n');
            continue;
        }
        if line == "..." {
            ended = true;
            continue;
        }
        if ended {
            current.push('\n');
            continue;
        }
        if current.is_empty() {
            start = index;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        docs.push((start, current));
    }
    docs
}

/// One document being read.
struct Doc<'a> {
    path: &'a Path,
    /// The whole file, for quoting lines.
    file: &'a str,
    /// The document's text.
    text: &'a str,
    /// 0-based line of the file where the document's text starts.
    offset: usize,
    /// Which names the document's fields are written in, chosen by its logsource's product.
    names: FieldNames,
}

type Problems = Vec<Diagnostic>;

impl Doc<'_> {
    fn shift(&self, problems: Diagnostics) -> Diagnostics {
        let mut out = Diagnostics::default();
        for problem in problems.iter() {
            let position = Position::new(problem.line + self.offset, problem.column);
            let mut moved = Diagnostic::at(
                self.path,
                self.file,
                position,
                problem.code,
                problem.message.clone(),
            );
            moved.context = problem.context.clone();
            out.push(moved);
        }
        out
    }

    /// The position of the value at `path`, in file coordinates.
    fn at(&self, path: &YamlPath) -> Position {
        let found = locate(self.text, path);
        Position::new(found.line + self.offset, found.column)
    }

    /// The position of the key at the end of `path` (the locator finds values; a key is on the
    /// value's line or the nearest line above that starts with it).
    fn key_at(&self, path: &YamlPath) -> Position {
        let value = locate(self.text, path);
        let Some(PathSegment::Key(key)) = path.segments().last() else {
            return Position::new(value.line + self.offset, value.column);
        };
        let lines: Vec<&str> = self.text.lines().collect();
        let last = value
            .line
            .saturating_sub(1)
            .min(lines.len().saturating_sub(1));
        for index in (0..=last).rev() {
            let line = lines.get(index).copied().unwrap_or("");
            if let Some(byte) = line.find(key.as_str()) {
                let column = line[..byte].chars().count() + 1;
                // A quoted key starts at its quote.
                let column = if line[..byte].ends_with(['\'', '"']) {
                    column - 1
                } else {
                    column
                };
                return Position::new(index + 1 + self.offset, column);
            }
            if index + 3 < value.line {
                break;
            }
        }
        Position::new(value.line + self.offset, value.column)
    }

    fn problem(
        &self,
        position: Position,
        code: &'static str,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::at(self.path, self.file, position, code, message)
    }

    fn document(
        &self,
        value: &Value,
        config: &SigmaConfig,
        stem: &Arc<str>,
        id_fallback: &Arc<str>,
    ) -> Result<Option<Document>, Diagnostics> {
        let start = self.at(&YamlPath::root());
        let Value::Mapping(map) = value else {
            return Err(one(self.problem(
                start,
                "sigma-not-a-rule",
                "a Sigma document is a mapping of keys (`title:`, `logsource:`, `detection:`, ...)",
            )));
        };
        if map.contains_key("correlation") {
            return Ok(Some(Document::Correlation(Box::new(RawCorrelation {
                path: self.path.to_path_buf(),
                position: Position::new(self.offset + 1, 1),
                source: self.text.to_string(),
                value: value.clone(),
            }))));
        }
        let is_filter = map.contains_key("filter");
        if !is_filter && !map.contains_key("detection") {
            return Err(one(self.problem(
                start,
                "sigma-not-a-rule",
                "the document has neither `detection:` (a rule), `filter:` (a filter) nor `correlation:` (a correlation rule)",
            )));
        }
        let mut problems: Problems = Vec::new();
        let meta = self.metadata(value, id_fallback, &mut problems);
        // Skips come first: a rule palisade would not run is not held to its detection.
        if let Some(status) = meta.status
            && !config.statuses.contains(&status)
            && !is_filter
        {
            return Ok(Some(self.skip(SkipReason::Status(status), &meta)));
        }
        if !is_filter && meta.level < config.min_level {
            return Ok(Some(self.skip(SkipReason::Level(meta.level), &meta)));
        }
        let kinds = match self.logsource(value) {
            Ok(kinds) => kinds,
            Err(reason) => return Ok(Some(self.skip(reason, &meta))),
        };
        let detection_key = if is_filter { "filter" } else { "detection" };
        let detection = value.get(detection_key).unwrap_or(&Value::Null);
        let detection_path = YamlPath::root().key(detection_key);
        let mut rules = Vec::new();
        if is_filter {
            rules = self.filter_rules(detection, &detection_path, &mut problems);
        }
        let rule_positions: Vec<Position> = (0..rules.len())
            .map(|i| {
                let at = detection_path.key("rules");
                if matches!(detection.get("rules"), Some(Value::Sequence(_))) {
                    self.at(&at.index(i))
                } else {
                    self.at(&at)
                }
            })
            .collect();
        let parsed = self.detection(
            detection,
            &detection_path,
            &kinds,
            config,
            is_filter,
            &mut problems,
        );
        if !problems.is_empty() {
            let mut out = Diagnostics::default();
            for problem in problems {
                out.push(problem.with_context(format!("rule `{}`", meta.title)));
            }
            return Err(out);
        }
        let Some((searches, condition)) = parsed else {
            return Err(one(self.problem(
                start,
                "sigma-bad-detection",
                "the detection could not be read",
            )));
        };
        if is_filter {
            return Ok(Some(Document::Filter(Box::new(SigmaFilter {
                path: self.path.to_path_buf(),
                position: start,
                id: meta.id,
                name: meta.name,
                title: meta.title,
                description: meta.description,
                rules,
                rule_positions,
                kinds,
                searches,
                condition,
            }))));
        }
        Ok(Some(Document::Rule(Box::new(SigmaRule {
            path: self.path.to_path_buf(),
            position: start,
            id: meta.id,
            stem: stem.clone(),
            name: meta.name,
            title: meta.title,
            description: meta.description,
            status: meta.status,
            level: meta.level,
            author: meta.author,
            references: meta.references,
            falsepositives: meta.falsepositives,
            tags: meta.tags,
            kinds,
            searches,
            condition,
        }))))
    }

    fn skip(&self, reason: SkipReason, meta: &Meta) -> Document {
        Document::Skipped(Skipped {
            path: self.path.to_path_buf(),
            position: Position::new(self.offset + 1, 1),
            id: meta.id.clone(),
            name: meta.name.clone(),
            reason,
        })
    }

    fn metadata(&self, value: &Value, id_fallback: &Arc<str>, problems: &mut Problems) -> Meta {
        let text = |key: &str, problems: &mut Problems| -> Option<String> {
            match value.get(key) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(_) => {
                    problems.push(self.problem(
                        self.at(&YamlPath::root().key(key)),
                        "sigma-bad-metadata",
                        format!("`{key}` must be text"),
                    ));
                    None
                }
            }
        };
        let list = |key: &str, problems: &mut Problems| -> Vec<String> {
            match value.get(key) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Sequence(items)) => items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| match item {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        Value::Bool(b) => Some(b.to_string()),
                        // An empty entry (`- ` alone) is common in SigmaHQ's falsepositives.
                        Value::Null => None,
                        _ => {
                            problems.push(self.problem(
                                self.at(&YamlPath::root().key(key).index(i)),
                                "sigma-bad-metadata",
                                format!("each entry of `{key}` must be text"),
                            ));
                            None
                        }
                    })
                    .collect(),
                Some(_) => {
                    problems.push(self.problem(
                        self.at(&YamlPath::root().key(key)),
                        "sigma-bad-metadata",
                        format!("`{key}` must be a list of text"),
                    ));
                    Vec::new()
                }
            }
        };
        let title = match text("title", problems) {
            Some(title) if !title.trim().is_empty() => title,
            _ => {
                problems.push(self.problem(
                    self.at(&YamlPath::root()),
                    "sigma-missing-title",
                    "a Sigma rule needs a `title`",
                ));
                String::new()
            }
        };
        let status = text("status", problems).and_then(|s| {
            let parsed = match s.as_str() {
                "stable" => Some(Status::Stable),
                "test" => Some(Status::Test),
                "experimental" => Some(Status::Experimental),
                "deprecated" => Some(Status::Deprecated),
                "unsupported" => Some(Status::Unsupported),
                _ => None,
            };
            if parsed.is_none() {
                problems.push(self.problem(
                    self.at(&YamlPath::root().key("status")),
                    "sigma-bad-status",
                    format!("unknown status `{s}`; one of stable, test, experimental, deprecated, unsupported"),
                ));
            }
            parsed
        });
        // The specification makes `level` optional; a rule without one is taken as medium, the
        // middle of the scale, so it neither pages at once nor is dropped by a `low` floor.
        let level = match text("level", problems) {
            None => Level::Medium,
            Some(l) => {
                match l.as_str() {
                    "informational" => Level::Informational,
                    "low" => Level::Low,
                    "medium" => Level::Medium,
                    "high" => Level::High,
                    "critical" => Level::Critical,
                    _ => {
                        problems.push(self.problem(
                        self.at(&YamlPath::root().key("level")),
                        "sigma-bad-level",
                        format!("unknown level `{l}`; one of informational, low, medium, high, critical"),
                    ));
                        Level::Medium
                    }
                }
            }
        };
        let id = text("id", problems)
            .filter(|id| !id.trim().is_empty())
            .map(Arc::from)
            .unwrap_or_else(|| id_fallback.clone());
        Meta {
            title,
            id,
            name: text("name", problems).map(Arc::from),
            status,
            level,
            description: text("description", problems),
            author: text("author", problems),
            references: list("references", problems),
            falsepositives: list("falsepositives", problems),
            tags: list("tags", problems),
        }
    }

    /// The event kinds the logsource maps to, or why it is skipped.
    fn logsource(&self, value: &Value) -> Result<Vec<EventKind>, SkipReason> {
        let logsource = value.get("logsource");
        let field = |key: &str| -> Option<String> {
            logsource
                .and_then(|l| l.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let product = field("product");
        let category = field("category");
        let service = field("service");
        let describe = || {
            format!(
                "{}/{}/{}",
                product.as_deref().unwrap_or("-"),
                category.as_deref().unwrap_or("-"),
                service.as_deref().unwrap_or("-")
            )
        };
        // A service narrows a logsource to one product's log, which palisade's events do not
        // record; such rules are skipped rather than run on events they were not written for.
        if service.is_some() {
            return Err(SkipReason::Logsource(describe()));
        }
        let kind = match (product.as_deref(), category.as_deref()) {
            (Some("palisade"), Some(name)) => EventKind::parse(name),
            (None | Some("windows" | "linux" | "macos"), Some("process_creation")) => {
                Some(EventKind::ProcessCreate)
            }
            (None | Some("windows" | "linux" | "macos"), Some("network_connection")) => {
                Some(EventKind::NetworkConnection)
            }
            (None | Some("windows" | "linux" | "macos"), Some("dns_query")) => {
                Some(EventKind::DnsQuery)
            }
            (None, Some("dns")) => Some(EventKind::DnsQuery),
            _ => None,
        };
        kind.map(|k| vec![k])
            .ok_or_else(|| SkipReason::Logsource(describe()))
    }

    /// A filter's `rules:`: the ids or names of the rules it applies to.
    fn filter_rules(
        &self,
        filter: &Value,
        path: &YamlPath,
        problems: &mut Problems,
    ) -> Vec<String> {
        let rules_path = path.key("rules");
        match filter.get("rules") {
            Some(Value::String(one)) => vec![one.clone()],
            Some(Value::Sequence(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Value::String(s) => Some(s.clone()),
                    _ => {
                        problems.push(self.problem(
                            self.at(&rules_path.index(i)),
                            "sigma-bad-filter",
                            "each entry of a filter's `rules` is a rule id or name",
                        ));
                        None
                    }
                })
                .collect(),
            _ => {
                problems.push(self.problem(
                    self.at(path),
                    "sigma-bad-filter",
                    "a filter needs `rules:`, the ids or names of the rules it applies to",
                ));
                Vec::new()
            }
        }
    }

    /// The search identifiers and the condition.
    fn detection(
        &self,
        detection: &Value,
        path: &YamlPath,
        kinds: &[EventKind],
        config: &SigmaConfig,
        is_filter: bool,
        problems: &mut Problems,
    ) -> Option<(Vec<Search>, Condition)> {
        let Value::Mapping(map) = detection else {
            problems.push(self.problem(
                self.at(path),
                "sigma-bad-detection",
                "the detection is a mapping of search identifiers and a `condition`",
            ));
            return None;
        };
        let mut searches = Vec::new();
        let mut failed = false;
        for (key, body) in map {
            let Some(name) = key.as_str() else {
                problems.push(self.problem(
                    self.at(path),
                    "sigma-bad-detection",
                    "search identifiers are text",
                ));
                failed = true;
                continue;
            };
            if name == "condition" || (is_filter && name == "rules") {
                continue;
            }
            if name == "timeframe" {
                problems.push(self.problem(
                    self.key_at(&path.key(name)),
                    "sigma-aggregation",
                    "`timeframe` belongs to Sigma v1 aggregations, which the specification deprecated; write a correlation rule",
                ));
                failed = true;
                continue;
            }
            let search_path = path.key(name);
            match self.search(body, &search_path, kinds, config, problems) {
                Some(body) => searches.push(Search {
                    name: name.to_string(),
                    body,
                }),
                None => failed = true,
            }
        }
        let condition_path = path.key("condition");
        let names: Vec<&str> = map
            .iter()
            .filter_map(|(k, _)| k.as_str())
            .filter(|k| *k != "condition" && *k != "timeframe" && !(is_filter && *k == "rules"))
            .collect();
        let texts: Vec<(String, YamlPath)> = match map.get("condition") {
            Some(Value::String(text)) => vec![(text.clone(), condition_path.clone())],
            Some(Value::Sequence(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Value::String(text) => Some((text.clone(), condition_path.index(i))),
                    _ => {
                        problems.push(self.problem(
                            self.at(&condition_path.index(i)),
                            "sigma-bad-condition",
                            "each condition in the list is text",
                        ));
                        None
                    }
                })
                .collect(),
            _ => {
                problems.push(self.problem(
                    self.at(path),
                    "sigma-bad-condition",
                    "the detection needs a `condition` (text, or a list of conditions any of which may hold)",
                ));
                return None;
            }
        };
        let mut conditions = Vec::new();
        for (text, at) in texts {
            match condition::parse(&text, &names) {
                Ok(c) => conditions.push(c),
                Err(err) => {
                    let value = self.at(&at);
                    // The offset counts from the text's first character; a quoted value
                    // starts one column after its quote.
                    let line = self
                        .file
                        .lines()
                        .nth(value.line.saturating_sub(1))
                        .unwrap_or("");
                    let quote = line
                        .chars()
                        .nth(value.column.saturating_sub(1))
                        .is_some_and(|c| c == '\'' || c == '"');
                    let column = value.column + err.offset + usize::from(quote);
                    problems.push(self.problem(
                        Position::new(value.line, column),
                        err.code,
                        err.message,
                    ));
                    failed = true;
                }
            }
        }
        if failed || conditions.is_empty() {
            return None;
        }
        // The searches kept are exactly the names list, in the same order, when none failed.
        let condition = if conditions.len() == 1 {
            conditions.remove(0)
        } else {
            Condition::Or(conditions)
        };
        Some((searches, condition))
    }

    fn search(
        &self,
        body: &Value,
        path: &YamlPath,
        kinds: &[EventKind],
        config: &SigmaConfig,
        problems: &mut Problems,
    ) -> Option<SearchBody> {
        match body {
            Value::Mapping(map) => {
                if map.is_empty() {
                    problems.push(self.problem(
                        self.at(path),
                        "sigma-bad-search",
                        "an empty search matches nothing; remove it or give it fields",
                    ));
                    return None;
                }
                // `'|all': [...]` alone: keywords that must all be found.
                if map.len() == 1
                    && let Some((key, values)) = map.iter().next()
                    && let Some(key) = key.as_str()
                    && key.starts_with('|')
                {
                    return self.keywords(values, key, &path.key(key), config, problems);
                }
                let items = self.items(map, path, kinds, config, problems)?;
                Some(SearchBody::AllOf(items))
            }
            Value::Sequence(list) => {
                if list.is_empty() {
                    problems.push(self.problem(
                        self.at(path),
                        "sigma-bad-search",
                        "an empty list matches nothing; remove it or give it values",
                    ));
                    return None;
                }
                if list.iter().all(|v| matches!(v, Value::Mapping(_))) {
                    let mut maps = Vec::new();
                    let mut ok = true;
                    for (i, item) in list.iter().enumerate() {
                        let Value::Mapping(map) = item else { continue };
                        let item_path = path.index(i);
                        if map.is_empty() {
                            problems.push(self.problem(
                                self.at(&item_path),
                                "sigma-bad-search",
                                "an empty map in a list of maps",
                            ));
                            ok = false;
                            continue;
                        }
                        match self.items(map, &item_path, kinds, config, problems) {
                            Some(items) => maps.push(items),
                            None => ok = false,
                        }
                    }
                    return ok.then_some(SearchBody::AnyOf(maps));
                }
                if list.iter().all(is_scalar) {
                    return self.keywords(body, "", path, config, problems);
                }
                problems.push(self.problem(
                    self.at(path),
                    "sigma-bad-search",
                    "a list in a search holds either keywords (values) or maps of fields, not both",
                ));
                None
            }
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                self.keywords(body, "", path, config, problems)
            }
            _ => {
                problems.push(self.problem(
                    self.at(path),
                    "sigma-bad-search",
                    "a search is a map of fields, a list of maps, or a list of keywords",
                ));
                None
            }
        }
    }

    /// A field-less search: keywords found anywhere in the event.
    fn keywords(
        &self,
        values: &Value,
        key: &str,
        path: &YamlPath,
        config: &SigmaConfig,
        problems: &mut Problems,
    ) -> Option<SearchBody> {
        let names: Vec<&str> = key.split('|').skip(1).collect();
        let at = if key.is_empty() {
            self.at(path)
        } else {
            self.key_at(path)
        };
        let values = self.values(values, path, problems)?;
        let modifiers = match modifiers::parse_modifiers(&names) {
            Ok(m) => m,
            Err(err) => {
                problems.push(self.problem(at, err.code(), err.message()));
                return None;
            }
        };
        match modifiers::apply(&modifiers, &values, &config.placeholders, true) {
            Ok(Entry::Tests(tests)) => Some(SearchBody::Keywords {
                tests: tests.tests,
                all: tests.all,
            }),
            Ok(Entry::FieldRefs { .. }) => {
                problems.push(self.problem(
                    at,
                    "sigma-modifier-combination",
                    "`fieldref` needs a field to compare",
                ));
                None
            }
            Err(err) => {
                problems.push(self.problem(self.at(path), err.code(), err.message()));
                None
            }
        }
    }

    fn items(
        &self,
        map: &yaml_serde::Mapping,
        path: &YamlPath,
        kinds: &[EventKind],
        config: &SigmaConfig,
        problems: &mut Problems,
    ) -> Option<Vec<Item>> {
        let mut items = Vec::new();
        let mut ok = true;
        for (key, value) in map {
            let key_text = match key {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => {
                    problems.push(self.problem(
                        self.at(path),
                        "sigma-bad-search",
                        "a field name is text",
                    ));
                    ok = false;
                    continue;
                }
            };
            let item_path = path.key(&key_text);
            // Positions are found only for problems: locating walks the text.
            let key_at = || self.key_at(&item_path);
            let mut parts = key_text.split('|');
            let field_name = parts.next().unwrap_or("");
            let names: Vec<&str> = parts.collect();
            if field_name.is_empty() {
                problems.push(self.problem(
                    key_at(),
                    "sigma-bad-search",
                    "a keyword entry (`'|all':`) must be the only entry of its search; put it in a search of its own",
                ));
                ok = false;
                continue;
            }
            let field = match self.field(field_name, kinds, &key_at) {
                Ok(field) => Some(field),
                Err(problem) => {
                    problems.push(*problem);
                    ok = false;
                    None
                }
            };
            let modifiers = match modifiers::parse_modifiers(&names) {
                Ok(m) => m,
                Err(err) => {
                    problems.push(self.problem(key_at(), err.code(), err.message()));
                    ok = false;
                    continue;
                }
            };
            let Some(values) = self.values(value, &item_path, problems) else {
                ok = false;
                continue;
            };
            let entry = match modifiers::apply(&modifiers, &values, &config.placeholders, false) {
                Ok(entry) => entry,
                Err(err) => {
                    problems.push(self.problem(self.at(&item_path), err.code(), err.message()));
                    ok = false;
                    continue;
                }
            };
            let Some(field) = field else { continue };
            let (tests, all) = match entry {
                Entry::Tests(t) => (t.tests, t.all),
                Entry::FieldRefs { refs, all } => {
                    let mut tests = Vec::new();
                    for r in refs {
                        match self.field(&r.other, kinds, &|| self.at(&item_path)) {
                            Ok(other) => tests.push(ValueTest::FieldRef {
                                other,
                                how: r.how,
                                cased: r.cased,
                            }),
                            Err(problem) => {
                                problems.push(*problem);
                                ok = false;
                            }
                        }
                    }
                    (tests, all)
                }
            };
            items.push(Item {
                field,
                written: field_name.to_string(),
                tests,
                all,
            });
        }
        ok.then_some(items)
    }

    fn field(
        &self,
        name: &str,
        kinds: &[EventKind],
        at: &dyn Fn() -> Position,
    ) -> Result<Field, Box<Diagnostic>> {
        self.names.resolve(name, kinds).map_err(|problem| Box::new(match problem {
            FieldProblem::Unknown => self.problem(
                at(),
                "sigma-unknown-field",
                format!("field `{name}` is carried by no input shape palisade reads, so the rule cannot run exactly"),
            ),
            FieldProblem::NotForKinds { kinds } => self.problem(
                at(),
                "sigma-field-not-for-logsource",
                format!(
                    "field `{name}` is not carried by {} events",
                    kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ),
        }))
    }

    /// The text of the plain (unquoted) number at `path`, as written in the source.
    fn written_number(&self, path: &YamlPath) -> Option<String> {
        let at = locate(self.text, path);
        let line = self.text.lines().nth(at.line.checked_sub(1)?)?;
        let rest: String = line.chars().skip(at.column.saturating_sub(1)).collect();
        let token = rest
            .split([',', ']', '}', '#'])
            .next()?
            .trim()
            .trim_start_matches("- ")
            .trim();
        let plausible = !token.is_empty()
            && token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_'))
            && token
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | '-'));
        plausible.then(|| token.to_string())
    }

    /// The written values of an entry: one scalar or a list of scalars.
    fn values(
        &self,
        value: &Value,
        path: &YamlPath,
        problems: &mut Problems,
    ) -> Option<Vec<RawValue>> {
        let one = |v: &Value, at: &YamlPath, problems: &mut Problems| -> Option<RawValue> {
            match v {
                Value::Null => Some(RawValue::Null),
                Value::Bool(b) => Some(RawValue::Bool(*b)),
                // Sigma compares values as text, so a number keeps the text it was written as
                // (`0x17` stays `0x17`, not the `23` YAML reads it as).
                Value::Number(n) => Some(RawValue::Number(
                    n.as_f64().unwrap_or(f64::NAN),
                    self.written_number(at).unwrap_or_else(|| n.to_string()),
                )),
                Value::String(s) => Some(RawValue::Text(s.clone())),
                _ => {
                    problems.push(self.problem(
                        self.at(at),
                        "sigma-bad-value",
                        "a value is text, a number, a boolean or null; a list of them means any one",
                    ));
                    None
                }
            }
        };
        match value {
            Value::Sequence(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match one(item, &path.index(i), problems) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            other => one(other, path, problems).map(|v| vec![v]),
        }
    }
}

struct Meta {
    title: String,
    id: Arc<str>,
    name: Option<Arc<str>>,
    status: Option<Status>,
    level: Level,
    description: Option<String>,
    author: Option<String>,
    references: Vec<String>,
    falsepositives: Vec<String>,
    tags: Vec<String>,
}

fn is_scalar(value: &Value) -> bool {
    matches!(
        value,
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null
    )
}

fn one(diagnostic: Diagnostic) -> Diagnostics {
    let mut out = Diagnostics::default();
    out.push(diagnostic);
    out
}

/// Counts, for reports: how many of each thing.
pub fn count_by<K: Ord, I: IntoIterator<Item = K>>(keys: I) -> BTreeMap<K, usize> {
    let mut counts = BTreeMap::new();
    for key in keys {
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}
