//! Assembling the Sigma content of a content directory: the team's own rules (in `rules/`, where
//! a rule that cannot run exactly is an error) and the configured folders (community corpora,
//! where such a rule is refused with a warning and counted), filters applied to the rules they
//! name, test sidecars attached to their rules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diagnostics::{Diagnostic, Diagnostics};

use super::ast::{Condition, SigmaRule};
use super::cases::{Sidecar, is_sidecar, parse_sidecar, rule_file_for};
use super::compiled::CompiledSet;
use super::correlation::Correlation;
use super::filter::SigmaFilter;
use super::load::{SigmaLoad, load};
use super::{SigmaConfig, SigmaContent, SigmaReport};

/// Loads the Sigma rules under `own` (the content's rules folder) and `folders` (configured
/// corpora). Problems with the team's own files go to `problems`; refusals in the configured
/// folders go to the report.
pub fn assemble(
    own: &Path,
    folders: &[PathBuf],
    config: &SigmaConfig,
    problems: &mut Diagnostics,
) -> SigmaContent {
    let mut roots = Vec::new();
    if own.is_dir() {
        roots.push(own.to_path_buf());
    }
    roots.extend(folders.iter().cloned());
    let loaded = load(&roots, config);
    let mut report = SigmaReport {
        files: loaded.files,
        skipped: BTreeMap::new(),
        refused: Vec::new(),
        filters: loaded.filters.len(),
        ..SigmaReport::default()
    };
    for (reason, files) in loaded.skipped_by_reason() {
        report.skipped.insert(reason, files.len());
    }
    let SigmaLoad {
        rules,
        filters,
        refused,
        correlations,
        ..
    } = loaded;
    for document in refused {
        let mine = document
            .iter()
            .next()
            .is_some_and(|d| d.file.starts_with(own));
        if mine {
            problems.extend(document);
        } else {
            report.refused.push(document);
        }
    }
    let rules = apply_filters(rules, &filters, problems);
    report.loaded = rules.len();
    let rules: Vec<Arc<SigmaRule>> = rules.into_iter().map(Arc::new).collect();
    // Correlations load all together: they may name each other.
    let correlations = match super::correlation::load(&correlations, &rules, &config.correlation) {
        Ok(correlations) => correlations,
        Err(found) => {
            problems.extend(found);
            Vec::new()
        }
    };
    let tests = sidecars(own, &rules, &correlations, problems);
    let compiled = if rules.is_empty() {
        None
    } else {
        match CompiledSet::new(&rules) {
            Ok(set) => Some(Arc::new(set)),
            Err(err) => {
                let folder = roots.first().map_or(own, PathBuf::as_path);
                problems.push(Diagnostic::file(
                    folder,
                    "sigma-compile",
                    format!("the Sigma rules cannot be compiled together: {err}"),
                ));
                None
            }
        }
    };
    SigmaContent {
        rules,
        correlations,
        compiled,
        tests,
        report,
    }
}

/// Adds each filter's condition to the rules it names: a named rule matches only when its own
/// condition and the filter's hold. A filter naming a rule whose event kinds its logsource does
/// not cover is an error (its fields were resolved for other kinds).
fn apply_filters(
    mut rules: Vec<SigmaRule>,
    filters: &[SigmaFilter],
    problems: &mut Diagnostics,
) -> Vec<SigmaRule> {
    for filter in filters {
        let source = std::fs::read_to_string(&filter.path).unwrap_or_default();
        for wanted in &filter.rules {
            // A name no loaded rule has is one the loader found skipped (by status, level or
            // logsource; it refuses names it never saw): that rule does not run, so there is
            // nothing to filter.
            for rule in rules
                .iter_mut()
                .filter(|r| &*r.id == wanted || r.name.as_deref() == Some(wanted.as_str()))
            {
                if let Some(kind) = rule.kinds.iter().find(|k| !filter.kinds.contains(k)) {
                    problems.push(Diagnostic::at(
                        &filter.path,
                        &source,
                        filter.position,
                        "sigma-filter-logsource",
                        format!(
                            "filter `{}` names rule `{wanted}`, which runs on {kind} events its logsource does not cover",
                            filter.id
                        ),
                    ));
                    continue;
                }
                let offset = rule.searches.len();
                rule.searches.extend(filter.searches.iter().map(|search| {
                    let mut search = search.clone();
                    search.name = format!("{}:{}", filter.id, search.name);
                    search
                }));
                let extra = shift(&filter.condition, offset);
                rule.condition = Condition::And(vec![rule.condition.clone(), extra]);
            }
        }
    }
    rules
}

/// `condition` with every search index moved by `offset`.
fn shift(condition: &Condition, offset: usize) -> Condition {
    match condition {
        Condition::Search(index) => Condition::Search(index + offset),
        Condition::Not(inner) => Condition::Not(Box::new(shift(inner, offset))),
        Condition::And(all) => Condition::And(all.iter().map(|c| shift(c, offset)).collect()),
        Condition::Or(any) => Condition::Or(any.iter().map(|c| shift(c, offset)).collect()),
    }
}

/// The test cases of every sidecar under `own`, each attached to the rule it tests.
fn sidecars(
    own: &Path,
    rules: &[Arc<SigmaRule>],
    correlations: &[Correlation],
    problems: &mut Diagnostics,
) -> Vec<(Arc<str>, crate::cases::TestCase)> {
    let mut files = Vec::new();
    collect_sidecars(own, &mut files, 0);
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let source = match std::fs::read_to_string(&path) {
            Ok(source) => source,
            Err(err) => {
                problems.push(Diagnostic::file(
                    &path,
                    "unreadable",
                    format!("cannot read the file: {err}"),
                ));
                continue;
            }
        };
        let sidecar = match parse_sidecar(&path, &source) {
            Ok(sidecar) => sidecar,
            Err(found) => {
                problems.extend(found);
                continue;
            }
        };
        match rule_of(&sidecar, rules, correlations) {
            Ok(id) => cases.extend(sidecar.cases.into_iter().map(|case| (id.clone(), case))),
            Err(message) => problems.push(Diagnostic::at(
                &path,
                &source,
                crate::diagnostics::locate(
                    &source,
                    &crate::diagnostics::YamlPath::root().key("rule"),
                ),
                "sigma-bad-test",
                message,
            )),
        }
    }
    cases
}

/// The id of the rule a sidecar tests: the one it names (a rule or a correlation, by id, name or
/// file stem), or the only rule of its rule file.
fn rule_of(
    sidecar: &Sidecar,
    rules: &[Arc<SigmaRule>],
    correlations: &[Correlation],
) -> Result<Arc<str>, String> {
    let files = rule_file_for(&sidecar.path).unwrap_or_default();
    let in_file = |path: &Path| files.iter().any(|f| f == path);
    if let Some(wanted) = &sidecar.rule {
        let rule = rules
            .iter()
            .find(|r| &*r.id == wanted || r.name.as_deref() == Some(wanted.as_str()))
            .or_else(|| {
                rules
                    .iter()
                    .find(|r| &*r.stem == wanted && in_file(&r.path))
            })
            .map(|r| r.id.clone());
        let correlation = || {
            correlations
                .iter()
                .find(|c| &*c.id == wanted || c.name.as_deref() == Some(wanted.as_str()))
                .map(|c| c.id.clone())
        };
        return rule
            .or_else(correlation)
            .ok_or_else(|| format!("the tests name rule `{wanted}`, which is not loaded"));
    }
    let mine: Vec<Arc<str>> = rules
        .iter()
        .filter(|r| in_file(&r.path))
        .map(|r| r.id.clone())
        .chain(
            correlations
                .iter()
                .filter(|c| in_file(&c.path))
                .map(|c| c.id.clone()),
        )
        .collect();
    match mine.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(format!(
            "no loaded Sigma rule in `{}` for these tests (name one with `rule:`)",
            files[0].display()
        )),
        _ => Err("the rule file holds several rules: name the one under test with `rule:`".into()),
    }
}

/// Sidecar files under `dir`, not following links, to a bounded depth.
fn collect_sidecars(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 16 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            collect_sidecars(&path, out, depth + 1);
        } else if kind.is_file() && is_sidecar(&path) {
            out.push(path);
        }
    }
}
