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

pub mod ast;
pub mod correlation;
pub mod eval;
pub mod fields;

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use ast::{Level, SigmaRule, Status};

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
