//! Sigma rules: the community's vendor-neutral detection format, run natively beside Rhai rules.
//!
//! ```text
//! *.yml ──► parse (positions, logsource → event kinds, fields → typed event fields,
//!           modifiers applied, `1 of X*` expanded) ──► SigmaRule (ast.rs, plain data)
//!                                                          │
//!             eval.rs: the direct evaluator, the definition ┤
//!             compiled.rs: every rule's tests in shared matchers, what the pipeline runs
//! ```
//!
//! Correlation rules (`correlation.rs`) count the detections of the rules they name in bounded
//! windows; filters (Sigma v2 meta-filters) add exclusions to the rules they name. The field
//! mapping table (`fields.rs`) is the one place Sigma field names meet the event model; the same
//! table is in docs/sigma.md.

mod assemble;
pub mod ast;
pub mod cases;
pub mod compiled;
pub mod condition;
pub mod correlation;
mod engine;
pub mod eval;
pub mod fields;
pub mod filter;
pub mod load;
pub mod modifiers;
pub mod parse;

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use assemble::assemble;
pub use ast::{Level, SigmaRule, Status};
pub use compiled::{CompileError, CompiledSet, CompiledStats, Scratch};
pub use engine::{SigmaEngine, SigmaRuleReport, severity};

/// The Sigma content that loaded: the rules (filters already applied), ready for workers.
#[derive(Debug, Clone, Default)]
pub struct SigmaContent {
    pub rules: Vec<std::sync::Arc<SigmaRule>>,
    /// The rules compiled into shared matchers, once per load (`None` without rules).
    pub compiled: Option<std::sync::Arc<CompiledSet>>,
    /// Correlation rules, resolved against the rules above.
    pub correlations: Vec<correlation::Correlation>,
    /// Test cases from sidecar files, with the id of the rule each tests.
    pub tests: Vec<(std::sync::Arc<str>, crate::cases::TestCase)>,
    /// What loading found, for `palisade validate`.
    pub report: SigmaReport,
}

/// What loading the Sigma folders found besides the rules: `palisade validate` prints it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SigmaReport {
    /// Files read.
    pub files: usize,
    /// Rules loaded (and run).
    pub loaded: usize,
    /// Filters applied.
    pub filters: usize,
    /// Documents skipped, by reason (`logsource windows/registry_set/-`, `status experimental`).
    pub skipped: BTreeMap<String, usize>,
    /// Rules in the configured folders that cannot run exactly, one entry per rule with its
    /// problems (the same refusals in the content's own `rules/` are errors instead).
    pub refused: Vec<crate::diagnostics::Diagnostics>,
}
pub use filter::SigmaFilter;
pub use load::{MAX_SIGMA_FILE_BYTES, SigmaLoad, load, load_source};
pub use parse::{RawCorrelation, SkipReason, Skipped};

/// The `sigma:` section of `palisade.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct SigmaConfig {
    /// Folders of Sigma rules besides the content's `rules/` folder (for example a SigmaHQ
    /// checkout's `rules/`), relative to the content directory. Read recursively.
    pub folders: Vec<PathBuf>,
    /// Which rule statuses load; a rule without a status loads.
    pub statuses: Vec<Status>,
    /// The lowest level that becomes a detection; rules below it are skipped and counted.
    pub min_level: Level,
    /// Values for the `expand` modifier's placeholders (`%admins%` → these values, any one
    /// matching). A rule naming a placeholder that is not here is refused.
    pub placeholders: BTreeMap<String, Vec<String>>,
    /// Bounds on the state correlation rules keep.
    pub correlation: CorrelationConfig,
}

/// The `sigma.correlation:` section: how much windowed state correlation rules may keep.
/// What goes beyond a bound is evicted, oldest first, and counted in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct CorrelationConfig {
    /// Groups (distinct group-by values, e.g. source addresses) per correlation. When full, the
    /// group seen least recently is evicted.
    pub max_groups: usize,
    /// Entries (counted events, distinct values or rules seen) per group. When full, the oldest
    /// entry is evicted.
    pub max_values: usize,
}

impl Default for CorrelationConfig {
    fn default() -> CorrelationConfig {
        CorrelationConfig {
            max_groups: 10_000,
            max_values: 1_000,
        }
    }
}

impl Default for SigmaConfig {
    fn default() -> SigmaConfig {
        SigmaConfig {
            folders: Vec::new(),
            statuses: vec![Status::Stable, Status::Test],
            min_level: Level::Low,
            placeholders: BTreeMap::new(),
            correlation: CorrelationConfig::default(),
        }
    }
}

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod tests;
