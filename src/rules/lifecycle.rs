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
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::event::{Event, EventKind};
    use crate::rules::{RuleDefinition, RuleEngine, RuleLimits, load_rule};

    fn load(meta: &str) -> Result<RuleDefinition, crate::diagnostics::Diagnostics> {
        let source = format!(
            "let rule = #{{\n  id: \"r\",\n  title: \"T\",\n  severity: \"low\",\n  events: [\"process_create\"],\n{meta}\n  filter: #{{ name: \"whoami.exe\" }},\n}};\n"
        );
        load_rule(Path::new("rules/r.rhai"), &source, &RuleLimits::default())
    }

    /// (line, column, code, message) of each problem.
    fn problems(meta: &str) -> Vec<(usize, usize, &'static str, String)> {
        load(meta)
            .expect_err("the rule should not load")
            .into_iter()
            .map(|d| (d.line, d.column, d.code, d.message))
            .collect()
    }

    #[test]
    fn lifecycle_keys_are_read_into_the_definition() {
        let rule = load(
            "  status: \"test\",\n  enabled: false,\n  disabled_reason: \"noisy\",\n  author: \"A. Author\",\n  references: [\"https://example.org/x\"],\n  false_positives: [\"backups\"],",
        )
        .expect("loads");
        assert_eq!(rule.status, RuleStatus::Test);
        assert!(!rule.enabled);
        assert_eq!(rule.disabled_reason.as_deref(), Some("noisy"));
        assert_eq!(rule.author.as_deref(), Some("A. Author"));
        assert_eq!(rule.references, ["https://example.org/x"]);
        assert_eq!(rule.false_positives, ["backups"]);
        let attribution = rule.attribution.expect("author and references are carried");
        assert_eq!(attribution.author.as_deref(), Some("A. Author"));

        // Without the keys: stable, enabled, nothing to carry.
        let plain = load("").expect("loads");
        assert_eq!(plain.status, RuleStatus::Stable);
        assert!(plain.enabled);
        assert!(plain.attribution.is_none());
    }

    #[test]
    fn a_misspelt_or_sigma_only_status_is_refused_at_its_key() {
        let found = problems("  status: \"experimentl\",");
        assert_eq!(
            (found[0].0, found[0].1, found[0].2),
            (6, 3, "rule-bad-status")
        );
        assert!(
            found[0].3.contains("(did you mean `experimental`?)"),
            "{}",
            found[0].3
        );
        let found = problems("  status: \"unsupported\",");
        assert_eq!(found[0].2, "rule-bad-status");
        assert!(found[0].3.contains("enabled: false"), "{}", found[0].3);
        let found = problems("  status: 3,");
        assert_eq!(found[0].2, "rule-bad-status");
    }

    #[test]
    fn lifecycle_values_of_the_wrong_type_are_refused_at_their_key() {
        let found = problems(
            "  enabled: \"no\",\n  author: 7,\n  references: \"https://example.org\",\n  false_positives: [1],",
        );
        let codes: Vec<(usize, &str)> = found.iter().map(|p| (p.0, p.2)).collect();
        assert_eq!(
            codes,
            [
                (6, "rule-bad-enabled"),
                (7, "rule-bad-author"),
                (8, "rule-bad-list"),
                (9, "rule-bad-list")
            ]
        );
    }

    #[test]
    fn a_reference_must_be_an_http_link_and_is_refused_at_its_text() {
        let found = problems(
            "  references: [\"https://example.org/ok\", \"ftp://example.org/x\", \"file:///etc/passwd\", \"not a link\"],",
        );
        let at: Vec<(usize, usize)> = found.iter().map(|p| (p.0, p.1)).collect();
        assert_eq!(at, [(6, 42), (6, 65), (6, 87)]);
        assert!(
            found[0]
                .3
                .contains("not an http or https link (scheme `ftp`)")
        );
        assert!(found[2].3.contains("is not a URL"), "{}", found[2].3);
    }

    #[test]
    fn a_disabled_rule_needs_a_reason_and_an_enabled_one_is_warned_about_a_stale_reason() {
        let found = problems("  enabled: false,");
        assert_eq!(
            (found[0].0, found[0].1, found[0].2),
            (6, 3, "rule-disabled-without-reason")
        );
        let rule = load("  disabled_reason: \"was noisy\",").expect("loads");
        let warning = rule.warnings.iter().next().expect("a warning");
        assert_eq!(warning.code, "rule-reason-while-enabled");
        assert_eq!(warning.line, 6);
    }

    /// The rule's status and attribution are on every detection it makes.
    #[test]
    fn detections_carry_the_rule_status_and_attribution() {
        let rule = load("  status: \"experimental\",\n  author: \"A. Author\",").expect("loads");
        let mut engine = RuleEngine::build(
            &[Arc::new(rule)],
            &RuleLimits::default(),
            &crate::intel::IntelHandle::default(),
        )
        .expect("builds");
        let mut event = Event::new("e1", EventKind::ProcessCreate, 0);
        event.name = Some("whoami.exe".into());
        let (mut detections, mut failures) = (Vec::new(), Vec::new());
        engine.evaluate(&event, &[], &mut detections, &mut failures);
        assert_eq!(detections.len(), 1, "{failures:?}");
        assert_eq!(detections[0].status, RuleStatus::Experimental);
        assert_eq!(
            detections[0]
                .attribution
                .as_ref()
                .and_then(|a| a.author.as_deref()),
            Some("A. Author")
        );
        let json = serde_json::to_value(&detections[0]).expect("serialises");
        assert_eq!(json["status"], "experimental");
    }

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
