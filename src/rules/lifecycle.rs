//! A rule's lifecycle: whether it runs (`enabled`, and the config's `rules.statuses`) and what
//! its detections are worth to playbooks (its `status`, carried on every detection).
//!
//! The same decision serves Rhai rules, Sigma rules and Sigma correlations, so `validate`, the
//! engine's start and a reload count what does not run in one way.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::detection::RuleStatus;

/// The `rules:` section of `palisade.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RulesConfig {
    /// Which rule statuses run (Rhai and Sigma rules alike; a rule without a `status` is
    /// `stable`). Rules of other statuses are still loaded, validated and tested, but never run;
    /// the engine counts them at start and at each reload. Sigma rules must also pass
    /// `sigma.statuses`, which decides which of them load at all.
    pub statuses: Vec<RuleStatus>,
}

impl Default for RulesConfig {
    fn default() -> RulesConfig {
        RulesConfig {
            statuses: vec![
                RuleStatus::Stable,
                RuleStatus::Test,
                RuleStatus::Experimental,
            ],
        }
    }
}

impl RulesConfig {
    /// Whether a rule that is `enabled` (or not) and has `status` runs under this config.
    pub fn runs(&self, enabled: bool, status: RuleStatus) -> bool {
        enabled && self.statuses.contains(&status)
    }
}

/// The statuses a Rhai rule may name: `unsupported` is Sigma's word for a rule that cannot
/// run, which a Rhai rule says with `enabled: false` instead.
pub const RHAI_STATUSES: [&str; 4] = ["experimental", "test", "stable", "deprecated"];

/// How many loaded rules do not run, and why: shown by `validate`, logged at start and reload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NotRun {
    /// Rules with `enabled: false`.
    pub disabled: usize,
    /// Enabled rules whose status `rules.statuses` does not list, by status.
    pub by_status: BTreeMap<RuleStatus, usize>,
}

impl NotRun {
    /// Counts one rule that does not run (nothing when it runs).
    pub fn count(&mut self, config: &RulesConfig, enabled: bool, status: RuleStatus) {
        if !enabled {
            self.disabled += 1;
        } else if !config.statuses.contains(&status) {
            *self.by_status.entry(status).or_default() += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.disabled == 0 && self.by_status.is_empty()
    }

    /// Rules not run because of their status.
    pub fn by_status_total(&self) -> usize {
        self.by_status.values().sum()
    }
}

/// `2 rule(s) disabled, 3 not run for their status (1 deprecated, 2 experimental)`
impl std::fmt::Display for NotRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} rule(s) disabled", self.disabled)?;
        if !self.by_status.is_empty() {
            let each: Vec<String> = self
                .by_status
                .iter()
                .map(|(status, n)| format!("{n} {status}"))
                .collect();
            write!(
                f,
                ", {} not run for their status ({}; `rules.statuses` chooses)",
                self.by_status_total(),
                each.join(", ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_rule_is_counted_as_disabled_whatever_its_status() {
        let config = RulesConfig {
            statuses: vec![RuleStatus::Stable],
        };
        let mut not_run = NotRun::default();
        not_run.count(&config, false, RuleStatus::Deprecated);
        not_run.count(&config, true, RuleStatus::Deprecated);
        not_run.count(&config, true, RuleStatus::Test);
        not_run.count(&config, true, RuleStatus::Stable);
        assert_eq!(not_run.disabled, 1);
        assert_eq!(not_run.by_status_total(), 2);
        assert_eq!(
            not_run.to_string(),
            "1 rule(s) disabled, 2 not run for their status (1 test, 1 deprecated; `rules.statuses` chooses)"
        );
        assert!(!config.runs(false, RuleStatus::Stable));
        assert!(config.runs(true, RuleStatus::Stable));
        assert!(!config.runs(true, RuleStatus::Test));
    }

    #[test]
    fn by_default_deprecated_and_unsupported_rules_do_not_run() {
        let config = RulesConfig::default();
        let running: Vec<RuleStatus> = RuleStatus::ALL
            .into_iter()
            .filter(|s| config.runs(true, *s))
            .collect();
        assert_eq!(
            running,
            [
                RuleStatus::Experimental,
                RuleStatus::Test,
                RuleStatus::Stable
            ]
        );
    }
}
