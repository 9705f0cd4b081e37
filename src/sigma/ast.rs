//! A Sigma rule as palisade holds it after parsing: plain data, every modifier already applied,
//! every `1 of X*` already expanded, every field already resolved to a typed event field.
//!
//! The parser (`parse.rs`) builds this; the direct evaluator (`eval.rs`) defines what it means;
//! the compiled set (`compiled.rs`) must agree with the evaluator on every event.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diagnostics::Position;
use crate::event::{EventKind, Field};

/// A Sigma rule's `status`: the same lifecycle as Rhai rules'. `sigma.statuses` chooses which
/// load, `rules.statuses` which of the loaded ones run.
pub use crate::detection::RuleStatus as Status;

/// A Sigma rule's `level`, ordered; config chooses the lowest that becomes a detection.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

/// One loaded Sigma detection rule.
#[derive(Debug, Clone)]
pub struct SigmaRule {
    /// The file, as diagnostics name it.
    pub path: PathBuf,
    /// Where the rule's document starts in the file (a file may hold several documents).
    pub position: Position,
    /// The rule's `id` (a UUID in SigmaHQ); the file stem when the rule has none.
    pub id: Arc<str>,
    /// The file stem, which playbook triggers may also name.
    pub stem: Arc<str>,
    /// Sigma v2 `name`, which correlation rules and filters may use instead of the id.
    pub name: Option<Arc<str>>,
    pub title: String,
    pub description: Option<String>,
    pub status: Option<Status>,
    pub level: Level,
    pub author: Option<String>,
    pub references: Vec<String>,
    pub falsepositives: Vec<String>,
    /// `tags` as written (`attack.t1059.001`, `attack.execution`, ...).
    pub tags: Vec<String>,
    /// The event kinds the rule's logsource maps to.
    pub kinds: Vec<EventKind>,
    /// The search identifiers, in file order. `Condition::Search` indexes into this.
    pub searches: Vec<Search>,
    pub condition: Condition,
}

/// One search identifier (`selection`, `filter_main`, `keywords`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub name: String,
    pub body: SearchBody,
}

/// What a search identifier holds.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchBody {
    /// A map: every item must match (AND).
    AllOf(Vec<Item>),
    /// A list of maps: any map may match (OR).
    AnyOf(Vec<Vec<Item>>),
    /// A field-less list of values (keywords): any value found in any text field (OR), or every
    /// value found (each in some field) when written with `|all`.
    Keywords { tests: Vec<ValueTest>, all: bool },
}

/// One `field|modifiers: value(s)` entry of a map.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub field: Field,
    /// The field's name as the rule wrote it, for messages.
    pub written: String,
    /// The values, each already turned into a test. Any one matching is enough (OR), unless
    /// `all` (the `all` modifier): then every one must match.
    pub tests: Vec<ValueTest>,
    pub all: bool,
}

/// One test on one field's value.
///
/// Text comparisons are case-insensitive unless `cased`: both sides are compared after
/// `str::to_lowercase` (the parser stores needles already lowercased when not cased).
#[derive(Debug, Clone, PartialEq)]
pub enum ValueTest {
    /// A text comparison; the needle has no wildcards left (they became `Glob`).
    Text {
        how: TextMatch,
        needle: String,
        cased: bool,
    },
    /// A value with `*`/`?` wildcards that is not a plain prefix/suffix/substring test.
    /// `*` is any run of characters, `?` exactly one character; escapes are already resolved.
    Glob { pattern: Vec<GlobPart>, cased: bool },
    /// The `re` modifier; flags already applied to the compiled expression.
    Regex(Regex),
    /// The `cidr` modifier: the field's address lies in the network.
    Cidr { network: IpAddr, prefix: u8 },
    /// `gt`/`gte`/`lt`/`lte`: the field's value read as a number.
    Compare { op: Compare, value: f64 },
    /// `exists: true|false`.
    Exists(bool),
    /// `field: null`: the field is absent (or empty-valued null in the input).
    Null,
    /// `fieldref`: this field's value compared with another field's value of the same event.
    FieldRef {
        other: Field,
        how: TextMatch,
        cased: bool,
    },
}

/// How a needle is compared with a field's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextMatch {
    Exact,
    Contains,
    StartsWith,
    EndsWith,
}

/// A piece of a glob pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GlobPart {
    Literal(String),
    /// `*`
    AnyRun,
    /// `?`
    AnyOne,
}

/// A comparison operator for `gt`/`gte`/`lt`/`lte`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compare {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// A compiled regular expression with the source it came from (for equality and messages).
#[derive(Debug, Clone)]
pub struct Regex {
    /// The pattern as compiled, flags included as an inline group (`(?i)...`).
    pub source: String,
    pub compiled: regex::Regex,
}

impl PartialEq for Regex {
    fn eq(&self, other: &Regex) -> bool {
        self.source == other.source
    }
}

/// A rule's condition, with every `1 of`/`all of` already expanded to `Or`/`And` over the named
/// searches.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The search at this index of [`SigmaRule::searches`].
    Search(usize),
    Not(Box<Condition>),
    And(Vec<Condition>),
    Or(Vec<Condition>),
}
