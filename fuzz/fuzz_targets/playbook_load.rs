//! Playbook YAML loading from text: parse against the schema, then validate steps, templates,
//! `when` conditions and rule references, as `palisade validate` and the engine do.
#![no_main]

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use palisade::intel::IntelHandle;
use palisade::playbooks::load_playbook;
use palisade::rules::{RuleDefinition, RuleLimits, build_engine, load_rule};

type Rules = HashMap<Arc<str>, Arc<RuleDefinition>>;

/// The shipped rules, so playbooks that name them get past the rule-reference checks into the
/// rest of validation. Loaded once; a rule that fails to load is left out.
fn shipped_rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
        let mut rules = Rules::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return rules;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(source) = std::fs::read_to_string(&path) else {
                continue;
            };
            if let Ok(rule) = load_rule(&path, &source, &RuleLimits::default()) {
                rules.insert(rule.id.clone(), Arc::new(rule));
            }
        }
        rules
    })
}

fn engine() -> &'static rhai::Engine {
    static ENGINE: OnceLock<rhai::Engine> = OnceLock::new();
    ENGINE.get_or_init(|| build_engine(&RuleLimits::default(), &IntelHandle::default()).0)
}

/// The default config's target policy, so literal targets are checked as `validate` checks them.
fn policy() -> Option<&'static palisade::actions::Policy> {
    static POLICY: OnceLock<Option<palisade::actions::Policy>> = OnceLock::new();
    POLICY
        .get_or_init(|| {
            let config = palisade::config::Config::default();
            config.actions.policy(&config.redis.url).ok()
        })
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    // Playbook files are read as UTF-8 text; other bytes never reach the loader.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("playbooks/fuzz.yaml");
    let _ = load_playbook(path, text, shipped_rules(), false, engine(), policy());
});
