//! ATT&CK coverage: which techniques the rules' `attack.t…` tags claim, per tactic, checked
//! against the shipped technique list, and the same as an ATT&CK Navigator layer.
//!
//! A tag is a claim by the rule's author, not a measurement: coverage says which techniques
//! some rule is written for, not how well it detects them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::attack::{AttackTag, Catalogue, parse_tag};

use super::inventory::{RuleEntry, tag_problem};

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coverage {
    /// The ATT&CK release the tags were checked against.
    pub attack_version: String,
    /// Rules considered (all engines).
    pub rules: usize,
    /// Distinct known techniques (and sub-techniques) some rule claims.
    pub techniques_covered: usize,
    /// Techniques in the release that are neither revoked nor deprecated.
    pub techniques_total: usize,
    /// In matrix order; tactics no rule covers are listed with no techniques.
    pub tactics: Vec<TacticCoverage>,
    /// `attack.*` tags that name no known technique or tactic, or a revoked technique.
    pub unknown_tags: Vec<UnknownTag>,
    /// Rules with no technique tag at all.
    pub rules_without_technique: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TacticCoverage {
    pub id: String,
    pub shortname: String,
    pub name: String,
    pub techniques: Vec<TechniqueCoverage>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TechniqueCoverage {
    pub id: String,
    pub name: String,
    /// The rules that claim it (by name: a Rhai rule's id, a Sigma rule's name or file stem),
    /// sorted.
    pub rules: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnknownTag {
    pub rule: String,
    pub file: String,
    pub tag: String,
    pub problem: String,
}

/// Maps every rule's technique tags onto the catalogue's tactics.
pub fn coverage(entries: &[RuleEntry], catalogue: &Catalogue) -> Coverage {
    // technique id → rule ids
    let mut claimed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unknown_tags = Vec::new();
    let mut rules_without_technique = Vec::new();
    for entry in entries {
        let mut any = false;
        for tag in &entry.tags {
            if let Some(problem) = tag_problem(tag, catalogue)
                && !problem.stale_only
            {
                unknown_tags.push(UnknownTag {
                    rule: entry.name.clone(),
                    file: entry.file.display().to_string(),
                    tag: tag.clone(),
                    problem: problem.message,
                });
                continue;
            }
            if let Some(AttackTag::Technique(id)) = parse_tag(tag) {
                any = true;
                let rules = claimed.entry(id).or_default();
                if !rules.contains(&entry.name) {
                    rules.push(entry.name.clone());
                }
            }
        }
        if !any {
            rules_without_technique.push(entry.name.clone());
        }
    }
    for rules in claimed.values_mut() {
        rules.sort();
    }
    let tactics = catalogue
        .tactics
        .iter()
        .map(|tactic| TacticCoverage {
            id: tactic.id.clone(),
            shortname: tactic.shortname.clone(),
            name: tactic.name.clone(),
            techniques: catalogue
                .techniques
                .iter()
                .filter(|t| t.tactics.contains(&tactic.shortname))
                .filter_map(|t| {
                    claimed.get(&t.id).map(|rules| TechniqueCoverage {
                        id: t.id.clone(),
                        name: t.name.clone(),
                        rules: rules.clone(),
                    })
                })
                .collect(),
        })
        .collect();
    Coverage {
        attack_version: catalogue.version.clone(),
        rules: entries.len(),
        techniques_covered: claimed
            .keys()
            .filter(|id| catalogue.technique(id).is_some())
            .count(),
        techniques_total: catalogue
            .techniques
            .iter()
            .filter(|t| !t.revoked && !t.deprecated)
            .count(),
        tactics,
        unknown_tags,
        rules_without_technique,
    }
}

/// Colours by number of rules: one rule, two, three or more.
const COLOURS: [&str; 3] = ["#fce93b", "#a6d96a", "#1a9641"];

/// An ATT&CK Navigator layer (format 4.5): each covered technique scored with its number of
/// rules and coloured by it, with the rule ids as its comment; a covered sub-technique's parent
/// is shown expanded.
pub fn navigator_layer(coverage: &Coverage) -> Value {
    let mut techniques: BTreeMap<&str, &TechniqueCoverage> = BTreeMap::new();
    for tactic in &coverage.tactics {
        for technique in &tactic.techniques {
            techniques.insert(&technique.id, technique);
        }
    }
    let most = techniques
        .values()
        .map(|t| t.rules.len())
        .max()
        .unwrap_or(1);
    let mut entries: Vec<Value> = techniques
        .values()
        .map(|t| {
            let n = t.rules.len();
            let colour = COLOURS[n.clamp(1, COLOURS.len()) - 1];
            json!({
                "techniqueID": t.id,
                "score": n,
                "color": colour,
                "comment": format!("rules: {}", t.rules.join(", ")),
                "enabled": true,
                "showSubtechniques": false,
            })
        })
        .collect();
    // The Navigator hides sub-techniques unless their parent says to show them.
    let parents: std::collections::BTreeSet<&str> = techniques
        .keys()
        .filter_map(|id| id.split_once('.').map(|(parent, _)| parent))
        .collect();
    for parent in parents {
        match entries
            .iter_mut()
            .find(|e| e.get("techniqueID").and_then(Value::as_str) == Some(parent))
        {
            Some(entry) => entry["showSubtechniques"] = json!(true),
            None => entries.push(json!({
                "techniqueID": parent,
                "enabled": true,
                "showSubtechniques": true,
            })),
        }
    }
    let major = coverage
        .attack_version
        .split('.')
        .next()
        .unwrap_or(&coverage.attack_version);
    json!({
        "name": "palisade rule coverage",
        "versions": {"attack": major, "navigator": "5.1.0", "layer": "4.5"},
        "domain": "enterprise-attack",
        "description": format!(
            "Techniques claimed by the attack.* tags of {} rule(s), checked against ATT&CK Enterprise {}. Score: number of rules.",
            coverage.rules, coverage.attack_version
        ),
        "sorting": 3,
        "hideDisabled": false,
        "techniques": entries,
        "gradient": {"colors": ["#ffffff", COLOURS[2]], "minValue": 0, "maxValue": most},
        "legendItems": [
            {"label": "1 rule", "color": COLOURS[0]},
            {"label": "2 rules", "color": COLOURS[1]},
            {"label": "3 or more rules", "color": COLOURS[2]},
        ],
        "showTacticRowBackground": false,
        "selectTechniquesAcrossTactics": true,
        "selectSubtechniquesWithParent": false,
    })
}
