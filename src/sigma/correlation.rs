//! Sigma v2 correlation rules: `event_count`, `value_count`, `temporal`, `temporal_ordered`.
//!
//! ```text
//! YAML document ──► parse (positions; every key checked) ──► CorrelationRule (as written)
//!                                                               │ resolve: rule names → loaded
//!                                                               ▼ Sigma rules, group-by → fields
//!                                                          Correlation (what runs)
//!                                                               │
//! Sigma detections of an event ──► window.rs: bounded windows per (correlation, group-by
//!                                  values) ──► one Detection per group per window
//!                                               │
//!                                  state::correlation: the windows in the state database, restored at start
//! ```
//!
//! The windows are counted by event time, not by the clock, so a replay of last week's events
//! decides exactly as the live engine did.

// The windows' table is the state writer's; re-exported under the name the correlations use.
pub use crate::state::correlation as store;
pub mod window;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use yaml_serde::Value;

use crate::detection::Severity;
use crate::diagnostics::{Diagnostic, Diagnostics, Position, YamlPath, locate, locate_key};
use crate::event::{EventKind, Field, FieldType};

use super::ast::{Level, SigmaRule, Status};
use super::severity;

pub use window::{CorrelationHandle, Evicted, Limits};

/// The longest `timespan` accepted: windows are held in memory and in the state database, and
/// a window longer than this is better served by the behaviour tracker's history.
pub const MAX_TIMESPAN_MS: i64 = 30 * 86_400_000;

/// What a correlation counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorrelationType {
    /// Events matched by the named rules.
    EventCount,
    /// Distinct values of one field in the events matched.
    ValueCount,
    /// Distinct named rules matched, in any order.
    Temporal,
    /// Named rules matched in the order they are listed.
    TemporalOrdered,
}

impl CorrelationType {
    pub const NAMES: &'static str = "event_count, value_count, temporal, temporal_ordered";

    pub fn as_str(self) -> &'static str {
        match self {
            CorrelationType::EventCount => "event_count",
            CorrelationType::ValueCount => "value_count",
            CorrelationType::Temporal => "temporal",
            CorrelationType::TemporalOrdered => "temporal_ordered",
        }
    }

    fn parse(text: &str) -> Option<CorrelationType> {
        [
            CorrelationType::EventCount,
            CorrelationType::ValueCount,
            CorrelationType::Temporal,
            CorrelationType::TemporalOrdered,
        ]
        .into_iter()
        .find(|t| t.as_str() == text)
    }
}

/// One criterion of a correlation's `condition`; several are joined with AND (a range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bound {
    Gt(u64),
    Gte(u64),
    Lt(u64),
    Lte(u64),
    Eq(u64),
}

impl Bound {
    pub fn holds(self, count: u64) -> bool {
        match self {
            Bound::Gt(n) => count > n,
            Bound::Gte(n) => count >= n,
            Bound::Lt(n) => count < n,
            Bound::Lte(n) => count <= n,
            Bound::Eq(n) => count == n,
        }
    }

    /// Whether the criterion needs a count to reach something (an upper bound alone holds for
    /// the first event, before anything was counted).
    fn is_lower(self) -> bool {
        matches!(self, Bound::Gt(_) | Bound::Gte(_) | Bound::Eq(_))
    }
}

/// The smallest count that satisfies every criterion (counts start at 1: a window holds the
/// event being decided), or `None` when no count does.
pub fn smallest_count(bounds: &[Bound]) -> Option<u64> {
    let mut low = 1u64;
    let mut high = u64::MAX;
    for bound in bounds {
        match *bound {
            Bound::Gt(n) => low = low.max(n.saturating_add(1)),
            Bound::Gte(n) => low = low.max(n),
            Bound::Eq(n) => {
                low = low.max(n);
                high = high.min(n);
            }
            Bound::Lt(n) => high = high.min(n.saturating_sub(1)),
            Bound::Lte(n) => high = high.min(n),
        }
    }
    (low <= high && !(bounds.iter().any(|b| matches!(b, Bound::Lt(0))))).then_some(low)
}

/// A name as written in the file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub text: String,
    pub position: Position,
}

/// A correlation document as written: checked on its own, its names not yet resolved.
#[derive(Debug, Clone)]
pub struct CorrelationRule {
    /// The file, as diagnostics name it.
    pub path: PathBuf,
    /// Where the document starts in the file.
    pub position: Position,
    /// The document's text, so later problems (a rule that does not exist) can quote the line.
    pub text: Arc<str>,
    /// The `id`; the file stem when the document has none.
    pub id: Arc<str>,
    /// Sigma v2 `name`, which other correlations could use instead of the id.
    pub name: Option<Arc<str>>,
    pub title: String,
    pub description: Option<String>,
    pub status: Option<Status>,
    /// `None`: the highest level of the rules it names.
    pub level: Option<Level>,
    pub author: Option<String>,
    pub references: Vec<String>,
    pub falsepositives: Vec<String>,
    pub tags: Vec<String>,
    /// `generate`: whether the named rules also alert on their own; by default only the
    /// correlation does.
    pub generate: bool,
    pub kind: CorrelationType,
    /// The named rules, in order (the order matters for `temporal_ordered`).
    pub rules: Vec<Written>,
    pub group_by: Vec<Written>,
    pub timespan_ms: i64,
    pub condition: Vec<Bound>,
    /// Where the condition is (the `correlation` section when it was left out).
    pub condition_at: Position,
    /// `condition.field` of a `value_count`.
    pub field: Option<Written>,
}

/// A correlation ready to run: names resolved to rule ids and typed event fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    pub id: Arc<str>,
    /// Sigma v2 `name`, which playbook triggers (and other correlations) may use.
    pub name: Option<Arc<str>>,
    /// The file it was read from; its stem names every rule of the file in a trigger.
    pub path: PathBuf,
    pub title: String,
    pub severity: Severity,
    pub tags: Arc<[String]>,
    pub kind: CorrelationType,
    /// The ids of the Sigma rules whose detections count, in the order written.
    pub rules: Vec<Arc<str>>,
    pub group_by: Vec<Field>,
    pub timespan_ms: i64,
    pub condition: Vec<Bound>,
    pub field: Option<Field>,
    /// The correlation's author and references, carried on its detections.
    pub attribution: Option<Arc<crate::detection::Attribution>>,
    /// The correlation's own `status` (`stable` when it names none), carried on its
    /// detections.
    pub status: crate::detection::RuleStatus,
    /// Whether the named rules' own detections are kept (`generate: true`) or only this
    /// correlation's (the specification's default).
    pub generate: bool,
}

impl Correlation {
    /// Whether `count` satisfies every criterion.
    pub fn holds(&self, count: u64) -> bool {
        self.condition.iter().all(|b| b.holds(count))
    }

    /// What stored windows were counted for: a stored window is restored only into a
    /// correlation that still counts the same thing the same way.
    pub fn fingerprint(&self) -> String {
        let fields: Vec<&str> = self.group_by.iter().map(|f| f.as_str()).collect();
        format!(
            "{}|{}|{}|{}|{}",
            self.kind.as_str(),
            self.rules.join(","),
            fields.join(","),
            self.field.map_or("", |f| f.as_str()),
            self.timespan_ms
        )
    }
}

/// The keys a correlation document may have at its top level.
const TOP_KEYS: &[&str] = &[
    "title",
    "id",
    "name",
    "description",
    "status",
    "level",
    "author",
    "references",
    "falsepositives",
    "tags",
    "date",
    "modified",
    "license",
    "taxonomy",
    "related",
    "fields",
    "generate",
    "correlation",
];

const CORRELATION_KEYS: &[&str] = &[
    "type",
    "rules",
    "group-by",
    "timespan",
    "condition",
    "generate",
    "aliases",
];

const CONDITION_KEYS: &[&str] = &["gt", "gte", "lt", "lte", "eq", "field"];

/// Where keys are in one document of a file.
struct Located<'a> {
    path: &'a Path,
    /// The document's own lines (the file's from `first_line` to the next `---`).
    text: String,
    /// The document's first line in the file, 0-based.
    first_line: usize,
    problems: Diagnostics,
}

impl Located<'_> {
    fn position(&self, at: &[&str]) -> Position {
        let mut path = YamlPath::root();
        for key in at {
            path = path.key(key);
        }
        let found = locate(&self.text, &path);
        Position::new(found.line + self.first_line, found.column)
    }

    /// Where the key itself is written (for an unknown key), not its value.
    fn key_position(&self, at: &[&str]) -> Position {
        let mut path = YamlPath::root();
        for key in at {
            path = path.key(key);
        }
        let found = locate_key(&self.text, &path);
        Position::new(found.line + self.first_line, found.column)
    }

    fn item_position(&self, at: &[&str], index: usize) -> Position {
        let mut path = YamlPath::root();
        for key in at {
            path = path.key(key);
        }
        let found = locate(&self.text, &path.index(index));
        Position::new(found.line + self.first_line, found.column)
    }

    fn error(&mut self, position: Position, code: &'static str, message: impl Into<String>) {
        let line = position.line.saturating_sub(self.first_line);
        let mut diagnostic = Diagnostic::at(
            self.path,
            &self.text,
            Position::new(line, position.column),
            code,
            message,
        );
        diagnostic.line = position.line;
        self.problems.push(diagnostic);
    }
}

/// Parses one correlation document. `document` is the YAML value of one document of the file
/// at `path`; `source` is that document's own text, and `position` is where it starts in the
/// file (a Sigma file may hold several documents): line `n` of `source` is line
/// `position.line + n - 1` of the file. Every problem found is reported, each at its
/// `file:line:col`.
pub fn parse(
    document: &Value,
    path: &Path,
    source: &str,
    position: Position,
) -> Result<CorrelationRule, Diagnostics> {
    let mut at = Located {
        path,
        text: source.to_string(),
        first_line: position.line.saturating_sub(1),
        problems: Diagnostics::default(),
    };
    let Some(top) = document.as_mapping() else {
        at.error(
            position,
            "sigma-correlation",
            "a correlation document must be a mapping",
        );
        return Err(at.problems);
    };
    unknown_keys(&mut at, top, &[], TOP_KEYS);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let title = match text(&mut at, document, &["title"]) {
        Some(title) if !title.trim().is_empty() => title,
        Some(_) => {
            let p = at.position(&["title"]);
            at.error(p, "sigma-correlation", "`title` is empty");
            String::new()
        }
        None => {
            if document.get("title").is_none() {
                at.error(
                    position,
                    "sigma-correlation",
                    "a correlation needs a `title`",
                );
            }
            String::new()
        }
    };
    let id: Arc<str> = text(&mut at, document, &["id"]).map_or_else(|| stem.into(), Into::into);
    let name = text(&mut at, document, &["name"]).map(Arc::from);
    let description = text(&mut at, document, &["description"]);
    let author = text(&mut at, document, &["author"]);
    let status = text(&mut at, document, &["status"]).and_then(|s| {
        let parsed = yaml_serde::from_value::<Status>(Value::String(s.clone())).ok();
        if parsed.is_none() {
            let p = at.position(&["status"]);
            at.error(
                p,
                "sigma-correlation",
                format!("unknown status `{s}`; one of stable, test, experimental, deprecated, unsupported"),
            );
        }
        parsed
    });
    let level = text(&mut at, document, &["level"]).and_then(|s| {
        let parsed = yaml_serde::from_value::<Level>(Value::String(s.clone())).ok();
        if parsed.is_none() {
            let p = at.position(&["level"]);
            at.error(
                p,
                "sigma-correlation",
                format!("unknown level `{s}`; one of informational, low, medium, high, critical"),
            );
        }
        parsed
    });
    let references = texts(&mut at, document, &["references"]).unwrap_or_default();
    let falsepositives = texts(&mut at, document, &["falsepositives"]).unwrap_or_default();
    let tags = texts(&mut at, document, &["tags"]).unwrap_or_default();

    let Some(body) = document.get("correlation") else {
        at.error(
            position,
            "sigma-correlation",
            "a correlation document needs a `correlation` section",
        );
        return Err(at.problems);
    };
    let Some(section) = body.as_mapping() else {
        let p = at.position(&["correlation"]);
        at.error(p, "sigma-correlation", "`correlation` must be a mapping");
        return Err(at.problems);
    };
    unknown_keys(&mut at, section, &["correlation"], CORRELATION_KEYS);
    // The specification puts `generate` at the top level; early drafts put it in the section.
    let generate = flag(&mut at, document, &["generate"])
        .or_else(|| flag(&mut at, body, &["correlation", "generate"]))
        .unwrap_or(false);
    if body.get("aliases").is_some() {
        let p = at.key_position(&["correlation", "aliases"]);
        at.error(
            p,
            "sigma-correlation-unsupported",
            "`aliases` is not supported: palisade's events carry one typed field per meaning \
             (a source address is `source_ip` whatever rule matched), so group by that field",
        );
    }
    let kind = match body.get("type") {
        None => {
            let p = at.position(&["correlation"]);
            at.error(
                p,
                "sigma-correlation",
                format!(
                    "`correlation` needs a `type`: one of {}",
                    CorrelationType::NAMES
                ),
            );
            None
        }
        Some(value) => match value.as_str().and_then(CorrelationType::parse) {
            Some(kind) => Some(kind),
            None => {
                let p = at.position(&["correlation", "type"]);
                at.error(
                    p,
                    "sigma-correlation",
                    format!(
                        "unknown correlation type {}; one of {}",
                        shown(value),
                        CorrelationType::NAMES
                    ),
                );
                None
            }
        },
    };
    let rules = written_list(&mut at, body, &["correlation", "rules"], "rules", true);
    let group_by = written_list(
        &mut at,
        body,
        &["correlation", "group-by"],
        "group-by",
        false,
    );
    let timespan_ms = match body.get("timespan") {
        None => {
            let p = at.position(&["correlation"]);
            at.error(
                p,
                "sigma-correlation",
                "`correlation` needs a `timespan` (a number and s, m, h or d: `5m`)",
            );
            None
        }
        Some(value) => {
            let parsed = value
                .as_str()
                .ok_or_else(|| "not text".to_string())
                .and_then(timespan);
            match parsed {
                Ok(ms) => Some(ms),
                Err(why) => {
                    let p = at.position(&["correlation", "timespan"]);
                    at.error(
                        p,
                        "sigma-correlation",
                        format!("`timespan` {} is {why}", shown(value)),
                    );
                    None
                }
            }
        }
    };
    let (condition, field) = condition(&mut at, body, kind, rules.len());
    let condition_at = if body.get("condition").is_some() {
        at.key_position(&["correlation", "condition"])
    } else {
        at.key_position(&["correlation"])
    };

    if !at.problems.is_empty() {
        return Err(at.problems);
    }
    let (Some(kind), Some(timespan_ms)) = (kind, timespan_ms) else {
        return Err(at.problems);
    };
    Ok(CorrelationRule {
        path: path.to_path_buf(),
        position,
        text: Arc::from(at.text.as_str()),
        id,
        name,
        title,
        description,
        status,
        level,
        author,
        references,
        falsepositives,
        tags,
        generate,
        kind,
        rules,
        group_by,
        timespan_ms,
        condition,
        condition_at,
        field,
    })
}

/// Parses a correlation document as the Sigma loader returns it.
pub fn parse_raw(raw: &super::RawCorrelation) -> Result<CorrelationRule, Diagnostics> {
    parse(&raw.value, &raw.path, &raw.source, raw.position)
}

/// Every correlation document the Sigma loader returned, parsed and resolved against the
/// loaded Sigma rules (and each other), within the `sigma.correlation` bounds: what the
/// correlation stage runs, or every problem found.
pub fn load(
    raw: &[super::RawCorrelation],
    sigma: &[Arc<SigmaRule>],
    limits: &crate::sigma::CorrelationConfig,
) -> Result<Vec<Correlation>, Diagnostics> {
    let mut problems = Diagnostics::default();
    let mut parsed = Vec::new();
    for document in raw {
        match parse_raw(document) {
            Ok(rule) => parsed.push(rule),
            Err(found) => problems.extend(found),
        }
    }
    match resolve_all(&parsed, sigma, limits) {
        Ok(correlations) if problems.is_empty() => Ok(correlations),
        Ok(_) => Err(problems),
        Err(found) => {
            problems.extend(found);
            Err(problems)
        }
    }
}

/// `5m` → milliseconds. The specification's form: digits and one of s, m, h, d, lowercase.
pub fn timespan(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let Some(unit) = text.chars().last() else {
        return Err("empty".into());
    };
    let scale: i64 = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return Err("not a number followed by s, m, h or d".into()),
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a number followed by s, m, h or d".into());
    }
    let number: i64 = digits
        .parse()
        .map_err(|_| "too long (at most 30 days)".to_string())?;
    let ms = number
        .checked_mul(scale)
        .filter(|ms| *ms <= MAX_TIMESPAN_MS)
        .ok_or_else(|| "too long (at most 30 days)".to_string())?;
    if ms == 0 {
        return Err("zero: a window must have a length".into());
    }
    Ok(ms)
}

fn condition(
    at: &mut Located<'_>,
    body: &Value,
    kind: Option<CorrelationType>,
    rule_count: usize,
) -> (Vec<Bound>, Option<Written>) {
    let here = ["correlation", "condition"];
    let Some(value) = body.get("condition") else {
        return match kind {
            // The specification's temporal examples leave the condition out: every named rule.
            Some(CorrelationType::Temporal | CorrelationType::TemporalOrdered) => {
                (vec![Bound::Gte(rule_count as u64)], None)
            }
            _ => {
                let p = at.position(&["correlation"]);
                at.error(
                    p,
                    "sigma-correlation",
                    "`correlation` needs a `condition` (for example `gte: 20`)",
                );
                (Vec::new(), None)
            }
        };
    };
    let Some(map) = value.as_mapping() else {
        let p = at.position(&here);
        at.error(
            p,
            "sigma-correlation",
            "`condition` must be a mapping of gt, gte, lt, lte, eq (and `field` for value_count)",
        );
        return (Vec::new(), None);
    };
    unknown_keys(at, map, &here, CONDITION_KEYS);
    let mut bounds = Vec::new();
    for (key, make) in [
        ("gt", Bound::Gt as fn(u64) -> Bound),
        ("gte", Bound::Gte),
        ("lt", Bound::Lt),
        ("lte", Bound::Lte),
        ("eq", Bound::Eq),
    ] {
        let Some(number) = value.get(key) else {
            continue;
        };
        match number.as_u64() {
            Some(n) => bounds.push(make(n)),
            None => {
                let p = at.position(&["correlation", "condition", key]);
                at.error(
                    p,
                    "sigma-correlation",
                    format!(
                        "`{key}` must be a whole number of at least 0, not {}",
                        shown(number)
                    ),
                );
            }
        }
    }
    let field = match value.get("field") {
        None => None,
        Some(name) => match name.as_str() {
            Some(text) if !text.is_empty() => Some(Written {
                text: text.to_string(),
                position: at.position(&["correlation", "condition", "field"]),
            }),
            _ => {
                let p = at.position(&["correlation", "condition", "field"]);
                at.error(p, "sigma-correlation", "`field` must name one field");
                None
            }
        },
    };
    let place = at.key_position(&here);
    if map.is_empty() || (bounds.is_empty() && at.problems.is_empty()) {
        at.error(
            place,
            "sigma-correlation",
            "`condition` needs at least one of gt, gte, lt, lte, eq",
        );
    } else if !bounds.is_empty() && smallest_count(&bounds).is_none() {
        at.error(
            place,
            "sigma-correlation",
            "`condition` can never hold: no count satisfies every criterion",
        );
    } else if !bounds.is_empty() && !bounds.iter().any(|b| b.is_lower()) {
        // Decided as each event arrives, an upper bound alone holds at the first event; it
        // could only be decided when the window closes, which palisade does not do.
        at.error(
            place,
            "sigma-correlation-unsupported",
            "a condition of only `lt`/`lte` holds for the first event of every window; palisade \
             decides as events arrive, so give a lower bound too (`gte: 10` with `lt: 50`)",
        );
    }
    match (kind, &field) {
        (Some(CorrelationType::ValueCount), None) if value.get("field").is_none() => {
            at.error(
                place,
                "sigma-correlation",
                "a value_count condition needs `field`: the field whose distinct values are counted",
            );
        }
        (Some(kind), Some(field)) if kind != CorrelationType::ValueCount => {
            at.error(
                field.position,
                "sigma-correlation",
                format!("`field` is only for value_count, not {}", kind.as_str()),
            );
        }
        _ => {}
    }
    (bounds, field)
}

fn unknown_keys(at: &mut Located<'_>, map: &yaml_serde::Mapping, here: &[&str], known: &[&str]) {
    for key in map.keys() {
        let name = key.as_str().map_or_else(|| shown(key), str::to_string);
        if known.contains(&name.as_str()) {
            continue;
        }
        let mut place: Vec<&str> = here.to_vec();
        place.push(&name);
        let p = at.key_position(&place);
        let hint = crate::diagnostics::suggest(&name, known.iter().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        let section = if here.is_empty() {
            String::new()
        } else {
            format!(" in `{}`", here.join("."))
        };
        at.error(
            p,
            "unknown-key",
            format!(
                "unknown key `{name}`{section}{hint}; keys: {}",
                known.join(", ")
            ),
        );
    }
}

/// A value as a message shows it.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("`{}`", crate::text::inert(s)),
        Value::Number(n) => format!("`{n}`"),
        Value::Bool(b) => format!("`{b}`"),
        Value::Null => "null".into(),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(_) => "a tagged value".into(),
    }
}

/// The text at `key` of `value`; a problem when present but not text.
fn text(at: &mut Located<'_>, value: &Value, place: &[&str]) -> Option<String> {
    let key = place.last()?;
    let found = value.get(*key)?;
    match found {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => None,
        other => {
            let p = at.position(place);
            at.error(
                p,
                "sigma-correlation",
                format!("`{key}` must be text, not {}", shown(other)),
            );
            None
        }
    }
}

fn flag(at: &mut Located<'_>, value: &Value, place: &[&str]) -> Option<bool> {
    let key = place.last()?;
    let found = value.get(*key)?;
    match found.as_bool() {
        Some(b) => Some(b),
        None => {
            let p = at.position(place);
            at.error(
                p,
                "sigma-correlation",
                format!("`{key}` must be true or false, not {}", shown(found)),
            );
            None
        }
    }
}

/// A list of text (a single text counts as a list of one).
fn texts(at: &mut Located<'_>, value: &Value, place: &[&str]) -> Option<Vec<String>> {
    let key = place.last()?;
    match value.get(*key)? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Sequence(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    Value::Number(n) => out.push(n.to_string()),
                    other => {
                        let p = at.item_position(place, i);
                        at.error(
                            p,
                            "sigma-correlation",
                            format!(
                                "`{key}` must be a list of text; item {} is {}",
                                i + 1,
                                shown(other)
                            ),
                        );
                    }
                }
            }
            Some(out)
        }
        Value::Null => None,
        other => {
            let p = at.position(place);
            at.error(
                p,
                "sigma-correlation",
                format!("`{key}` must be a list of text, not {}", shown(other)),
            );
            None
        }
    }
}

fn written_list(
    at: &mut Located<'_>,
    body: &Value,
    place: &[&str],
    key: &str,
    required: bool,
) -> Vec<Written> {
    if body.get(key).is_none() {
        if required {
            let p = at.position(&["correlation"]);
            at.error(
                p,
                "sigma-correlation",
                format!("`correlation` needs `{key}`: the rules whose detections it counts"),
            );
        }
        return Vec::new();
    }
    let names = texts(at, body, place).unwrap_or_default();
    let mut out: Vec<Written> = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let position = if matches!(body.get(key), Some(Value::Sequence(_))) {
            at.item_position(place, i)
        } else {
            at.position(place)
        };
        if name.trim().is_empty() {
            at.error(
                position,
                "sigma-correlation",
                format!("`{key}` item {} is empty", i + 1),
            );
            continue;
        }
        if out.iter().any(|w| w.text == name) {
            at.error(
                position,
                "sigma-correlation",
                format!("`{key}` names `{}` twice", crate::text::inert(&name)),
            );
            continue;
        }
        out.push(Written {
            text: name,
            position,
        });
    }
    if required && out.is_empty() && !at.problems.iter().any(|p| p.code == "sigma-correlation") {
        let p = at.position(place);
        at.error(p, "sigma-correlation", format!("`{key}` names no rule"));
    }
    out
}

impl CorrelationRule {
    fn error(&self, position: Position, code: &'static str, message: String) -> Diagnostic {
        let first_line = self.position.line.saturating_sub(1);
        let mut diagnostic = Diagnostic::at(
            &self.path,
            &self.text,
            Position::new(position.line.saturating_sub(first_line), position.column),
            code,
            message,
        )
        .with_context(format!("correlation {}", self.id));
        diagnostic.line = position.line;
        diagnostic
    }
}

/// What a correlation's `rules` entry names.
enum Named<'a> {
    Rule(&'a SigmaRule),
    Correlation(&'a CorrelationRule),
}

impl Named<'_> {
    fn id(&self) -> &Arc<str> {
        match self {
            Named::Rule(rule) => &rule.id,
            Named::Correlation(correlation) => &correlation.id,
        }
    }
}

/// The rules and correlations `text` names: by id first, then by `name`.
fn lookup<'a>(
    text: &str,
    sigma: &'a [Arc<SigmaRule>],
    correlations: &'a [CorrelationRule],
) -> Vec<Named<'a>> {
    let by_id: Vec<Named<'a>> = sigma
        .iter()
        .filter(|s| *s.id == *text)
        .map(|s| Named::Rule(s))
        .chain(
            correlations
                .iter()
                .filter(|c| *c.id == *text)
                .map(Named::Correlation),
        )
        .collect();
    if !by_id.is_empty() {
        return by_id;
    }
    sigma
        .iter()
        .filter(|s| s.name.as_deref() == Some(text))
        .map(|s| Named::Rule(s))
        .chain(
            correlations
                .iter()
                .filter(|c| c.name.as_deref() == Some(text))
                .map(Named::Correlation),
        )
        .collect()
}

/// The event kinds a named correlation's detections come from (those of the Sigma rules at the
/// end of its chain). `stack` holds the correlations on the way here: meeting one again is a
/// cycle, which could never fire (each needs the other first) and is refused.
fn chain_kinds(
    correlation: &CorrelationRule,
    sigma: &[Arc<SigmaRule>],
    correlations: &[CorrelationRule],
    stack: &mut Vec<Arc<str>>,
) -> Result<Vec<EventKind>, String> {
    if stack.contains(&correlation.id) || stack.len() > correlations.len() {
        let mut names: Vec<&str> = stack.iter().map(|id| &**id).collect();
        names.push(&correlation.id);
        return Err(format!(
            "correlations name each other in a cycle ({}), which could never fire",
            names.join(" → ")
        ));
    }
    stack.push(correlation.id.clone());
    let mut kinds: Vec<EventKind> = Vec::new();
    for written in &correlation.rules {
        // A name that does not resolve is reported where that correlation is resolved.
        if let [one] = lookup(&written.text, sigma, correlations).as_slice() {
            let found = match one {
                Named::Rule(rule) => rule.kinds.clone(),
                Named::Correlation(inner) => chain_kinds(inner, sigma, correlations, stack)?,
            };
            for kind in found {
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
        }
    }
    stack.pop();
    Ok(kinds)
}

/// Resolves a parsed correlation against the loaded Sigma rules and correlations: each named
/// rule must exist (by id, or by `name`), and each group-by field (and a value_count's field)
/// must be a field the named rules' events carry. A correlation may name another correlation
/// (chaining, as the specification allows): it then counts that correlation's detections.
/// `correlations` are all the correlations loaded (this one among them).
pub fn resolve(
    rule: &CorrelationRule,
    sigma: &[Arc<SigmaRule>],
    correlations: &[CorrelationRule],
) -> Result<Correlation, Diagnostics> {
    let mut problems = Diagnostics::default();
    let mut ids: Vec<Arc<str>> = Vec::new();
    let mut kinds: Vec<EventKind> = Vec::new();
    let mut levels: Vec<Level> = Vec::new();
    for written in &rule.rules {
        let found = lookup(&written.text, sigma, correlations);
        match found.as_slice() {
            [one] => {
                if ids.contains(one.id()) {
                    problems.push(rule.error(
                        written.position,
                        "sigma-correlation",
                        format!(
                            "`{}` is rule {}, which this correlation already names",
                            crate::text::inert(&written.text),
                            one.id()
                        ),
                    ));
                    continue;
                }
                let reached = match one {
                    Named::Rule(base) => {
                        levels.push(base.level);
                        Ok(base.kinds.clone())
                    }
                    Named::Correlation(inner) => {
                        levels.extend(inner.level);
                        chain_kinds(inner, sigma, correlations, &mut vec![rule.id.clone()])
                    }
                };
                match reached {
                    Ok(found) => {
                        ids.push(one.id().clone());
                        for kind in found {
                            if !kinds.contains(&kind) {
                                kinds.push(kind);
                            }
                        }
                    }
                    Err(why) => {
                        problems.push(rule.error(written.position, "sigma-correlation", why));
                    }
                }
            }
            [] => {
                let hint = crate::diagnostics::suggest(
                    &written.text,
                    sigma
                        .iter()
                        .flat_map(|s| std::iter::once(&*s.id).chain(s.name.as_deref()))
                        .chain(
                            correlations
                                .iter()
                                .flat_map(|c| std::iter::once(&*c.id).chain(c.name.as_deref())),
                        ),
                )
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
                problems.push(rule.error(
                    written.position,
                    "sigma-correlation-unknown-rule",
                    format!(
                        "no loaded Sigma rule or correlation has the id or name `{}`{hint}",
                        crate::text::inert(&written.text)
                    ),
                ));
            }
            many => problems.push(rule.error(
                written.position,
                "sigma-correlation",
                format!(
                    "`{}` names {} rules ({}); name one by its id",
                    crate::text::inert(&written.text),
                    many.len(),
                    many.iter()
                        .map(|n| &**n.id())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
    let mut group_by = Vec::new();
    for written in &rule.group_by {
        match field_for(&written.text, &kinds) {
            Ok(field) => {
                if group_by.contains(&field) {
                    problems.push(rule.error(
                        written.position,
                        "sigma-correlation",
                        format!("`{}` groups by {field} a second time", written.text),
                    ));
                } else {
                    group_by.push(field);
                }
            }
            Err(why) => problems.push(rule.error(
                written.position,
                "sigma-field",
                format!("group-by `{}`: {why}", crate::text::inert(&written.text)),
            )),
        }
    }
    let field = match &rule.field {
        None => None,
        Some(written) => match field_for(&written.text, &kinds) {
            Ok(field) => Some(field),
            Err(why) => {
                problems.push(rule.error(
                    written.position,
                    "sigma-field",
                    format!(
                        "condition field `{}`: {why}",
                        crate::text::inert(&written.text)
                    ),
                ));
                None
            }
        },
    };
    let needed = smallest_count(&rule.condition).unwrap_or(0);
    let temporal = matches!(
        rule.kind,
        CorrelationType::Temporal | CorrelationType::TemporalOrdered
    );
    if temporal && needed > rule.rules.len() as u64 {
        problems.push(rule.error(
            rule.condition_at,
            "sigma-correlation",
            format!(
                "the condition needs {needed} different rules, but the correlation names {}; it could never fire",
                rule.rules.len()
            ),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let level = rule
        .level
        .or_else(|| levels.iter().copied().max())
        .unwrap_or(Level::Medium);
    let mut tags = rule.tags.clone();
    tags.retain(|t| !t.is_empty());
    Ok(Correlation {
        id: rule.id.clone(),
        name: rule.name.clone(),
        path: rule.path.clone(),
        title: rule.title.clone(),
        severity: severity(level),
        tags: Arc::from(tags),
        kind: rule.kind,
        rules: ids,
        group_by,
        timespan_ms: rule.timespan_ms,
        condition: rule.condition.clone(),
        field,
        attribution: (rule.author.is_some() || !rule.references.is_empty()).then(|| {
            Arc::new(crate::detection::Attribution {
                author: rule.author.clone(),
                references: rule.references.clone(),
            })
        }),
        status: rule.status.unwrap_or_default(),
        generate: rule.generate,
    })
}

/// Resolves every correlation; the problems of all of them together. `limits` are the
/// `sigma.correlation` bounds: a condition that needs more entries in one window than a group
/// may keep could never fire, and is refused rather than left to never fire.
pub fn resolve_all(
    rules: &[CorrelationRule],
    sigma: &[Arc<SigmaRule>],
    limits: &crate::sigma::CorrelationConfig,
) -> Result<Vec<Correlation>, Diagnostics> {
    let mut problems = Diagnostics::default();
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let needed = smallest_count(&rule.condition).unwrap_or(0);
        if needed > limits.max_values as u64 {
            problems.push(rule.error(
                rule.condition_at,
                "sigma-correlation",
                format!(
                    "the condition needs {needed} entries in one window, more than \
                     `sigma.correlation.max_values` ({}) keeps; raise that bound or lower the condition",
                    limits.max_values
                ),
            ));
            continue;
        }
        if rules[..i].iter().any(|earlier| earlier.id == rule.id) {
            problems.push(rule.error(
                rule.position,
                "sigma-correlation",
                format!("another correlation already has the id `{}`", rule.id),
            ));
            continue;
        }
        if let Some(base) = sigma.iter().find(|s| s.id == rule.id) {
            // Their detections would carry one rule id: which fired could not be told apart.
            problems.push(rule.error(
                rule.position,
                "sigma-correlation",
                format!(
                    "the Sigma rule in `{}` already has the id `{}`",
                    base.path.display(),
                    rule.id
                ),
            ));
            continue;
        }
        match resolve(rule, sigma, rules) {
            Ok(correlation) => out.push(correlation),
            Err(found) => problems.extend(found),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// The event field a group-by name reads on events of `kinds`: a Sigma field name from the one
/// table, or palisade's own field name (the `product: palisade` logsource uses those).
fn field_for(name: &str, kinds: &[EventKind]) -> Result<Field, String> {
    let table = super::fields::resolve(name, kinds);
    if let Ok(field) = table {
        return Ok(field);
    }
    let own = Field::parse(name).filter(|f| !matches!(f, Field::Id | Field::Timestamp));
    if let Some(field) = own {
        let carried = field
            .kinds()
            .is_none_or(|carried| kinds.iter().all(|k| carried.contains(k)));
        if carried {
            return Ok(field);
        }
    }
    let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    Err(match table {
        Err(super::fields::FieldProblem::NotForKinds { .. }) => format!(
            "this field is not carried by every event the named rules see ({})",
            kinds.join(", ")
        ),
        _ if own.is_some() => format!(
            "this field is not carried by every event the named rules see ({})",
            kinds.join(", ")
        ),
        _ => "no event palisade reads carries a field of this name".to_string(),
    })
}

/// Whether a field's values can name an address a response may act on.
pub(crate) fn is_address(field: Field) -> bool {
    field.field_type() == FieldType::IpAddress
}

#[cfg(test)]
mod tests;
