//! Sigma v2 filters: documents that name rules and add exclusions to them, so a team tunes a
//! community rule in its own reviewed repository instead of editing the rule.
//!
//! ```yaml
//! title: Our build servers run encoded PowerShell
//! logsource: {product: windows, category: process_creation}
//! filter:
//!   rules: [rule-id-or-name]
//!   build_hosts:
//!     Computer|startswith: 'BUILD-'
//!   condition: not build_hosts
//! ```
//!
//! The filter's searches and condition are parsed exactly as a rule's (parse.rs); a rule the
//! filter names matches only when its own condition *and* the filter's condition hold.

use std::path::PathBuf;
use std::sync::Arc;

use crate::diagnostics::Position;
use crate::event::{Event, EventKind};

use super::ast::{Condition, Search};
use super::eval;

/// One parsed filter document.
#[derive(Debug, Clone)]
pub struct SigmaFilter {
    pub path: PathBuf,
    pub position: Position,
    pub id: Arc<str>,
    pub name: Option<Arc<str>>,
    pub title: String,
    pub description: Option<String>,
    /// The ids or names of the rules the filter applies to, as written.
    pub rules: Vec<String>,
    /// The event kinds of the filter's logsource; its fields were resolved for these.
    pub kinds: Vec<EventKind>,
    pub searches: Vec<Search>,
    /// Must hold, besides the rule's own condition, for a named rule to match.
    pub condition: Condition,
}

impl SigmaFilter {
    /// Whether the filter lets `event` through (its condition holds). The caller applies it
    /// only to the rules it names.
    pub fn passes(&self, event: &Event) -> bool {
        holds(&self.condition, &self.searches, event)
    }

    /// Whether the filter names the rule with this id or name (the specification's two ways of
    /// referring to a rule).
    pub fn names(&self, id: &str, name: Option<&str>) -> bool {
        self.rules
            .iter()
            .any(|r| r == id || name.is_some_and(|n| n == r))
    }
}

fn holds(condition: &Condition, searches: &[Search], event: &Event) -> bool {
    match condition {
        Condition::Search(index) => searches
            .get(*index)
            .is_some_and(|search| eval::search_matches(&search.body, event)),
        Condition::Not(inner) => !holds(inner, searches, event),
        Condition::And(all) => all.iter().all(|c| holds(c, searches, event)),
        Condition::Or(any) => any.iter().any(|c| holds(c, searches, event)),
    }
}
