//! The content a team keeps in git: config, rules and playbooks, loaded together.
//!
//! `palisade validate`, `test`, `replay` and `run` all load through [`load`], so what validates
//! is exactly what runs. Loading reads every file and reports every problem in one pass.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{self, CONFIG_FILE, Config};
use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::intel::Warninglists;
use crate::playbooks::{Playbook, load_playbook};
use crate::rules::{RuleDefinition, build_engine, load_rule};

/// A validated set of config, rules and playbooks.
#[derive(Debug, Clone)]
pub struct Content {
    /// The content directory everything else is relative to.
    pub dir: PathBuf,
    pub config: Config,
    /// The config file that was read, or `None` for the embedded default.
    pub config_path: Option<PathBuf>,
    pub rules: Vec<Arc<RuleDefinition>>,
    pub playbooks: Vec<Arc<Playbook>>,
    /// Benign infrastructure from `warninglists/*.json`.
    pub warninglists: Warninglists,
    /// Sigma rules from `rules/*.yml` and the configured folders (docs/sigma.md).
    pub sigma: crate::sigma::SigmaContent,
}

/// Where warninglists are read from, relative to the content directory.
pub const WARNINGLISTS_DIR: &str = "warninglists";

impl Content {
    /// Resolves a path from config or a test case against the content directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        display_path(&self.dir, path)
    }
}

/// `dir/path`, without a leading `./`, so diagnostics read `rules/x.rhai:3:5`.
pub fn display_path(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() || dir == Path::new(".") || dir.as_os_str().is_empty() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// Loads and validates the content in `dir`. `config_file` overrides `dir/palisade.yaml`.
pub fn load(dir: &Path, config_file: Option<&Path>) -> Result<Content, Diagnostics> {
    let mut problems = Diagnostics::default();
    let config_path = match config_file {
        Some(path) => Some(path.to_path_buf()),
        None => {
            let candidate = display_path(dir, Path::new(CONFIG_FILE));
            candidate.exists().then_some(candidate)
        }
    };
    let config = match &config_path {
        None => Config::default(),
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => config::parse(path, &text).unwrap_or_else(|found| {
                problems.extend(found);
                Config::default()
            }),
            Err(err) => {
                problems.push(Diagnostic::file(
                    path,
                    "unreadable",
                    format!("cannot read the config file: {err}"),
                ));
                Config::default()
            }
        },
    };

    if config.anomaly.enabled {
        // The model is content too: a broken one must fail validation, not the running engine
        // (or a test case: the shipped example is checked when none is named).
        let path = display_path(dir, &crate::anomaly::model_or_example(&config.anomaly));
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Err((at, message)) = crate::anomaly::Model::from_text(&text)
        {
            let position = at.map_or(crate::diagnostics::Position::START, |(line, column)| {
                crate::diagnostics::Position::new(line, column)
            });
            problems.push(Diagnostic::at(
                &path,
                &text,
                position,
                "model-invalid",
                format!("the anomaly model cannot be used: {message}"),
            ));
        }
    }
    let rules_dir = display_path(dir, &config.content.rules);
    let playbooks_dir = display_path(dir, &config.content.playbooks);
    if !rules_dir.is_dir() && !playbooks_dir.is_dir() {
        problems.push(Diagnostic::file(
            dir,
            "no-content",
            format!(
                "found neither `{}` nor `{}`; run `palisade init` or point at a content directory",
                rules_dir.display(),
                playbooks_dir.display()
            ),
        ));
        return Err(problems);
    }

    let mut rules: Vec<Arc<RuleDefinition>> = Vec::new();
    let mut rules_by_id: HashMap<Arc<str>, Arc<RuleDefinition>> = HashMap::new();
    for path in files(&rules_dir, &["rhai"], &mut problems) {
        let Some(source) = read(&path, &mut problems) else {
            continue;
        };
        match load_rule(&path, &source, &config.limits) {
            Ok(rule) => {
                if let Some(first) = rules_by_id.get(&rule.id) {
                    problems.push(duplicate_id(
                        &path,
                        &source,
                        rule.position,
                        &rule.id,
                        &first.path,
                    ));
                    continue;
                }
                let rule = Arc::new(rule);
                rules_by_id.insert(rule.id.clone(), rule.clone());
                rules.push(rule);
            }
            Err(found) => problems.extend(found),
        }
    }

    let sigma_folders: Vec<PathBuf> = config
        .sigma
        .folders
        .iter()
        .map(|folder| display_path(dir, folder))
        .collect();
    let sigma = crate::sigma::assemble(&rules_dir, &sigma_folders, &config.sigma, &mut problems);
    let mut rule_names = crate::playbooks::RuleNames::default();
    for id in rules_by_id.keys() {
        rule_names.insert(id, id);
    }
    for rule in &sigma.rules {
        if let Some(rhai) = rules_by_id.get(&rule.id) {
            let source = std::fs::read_to_string(&rule.path).unwrap_or_default();
            problems.push(duplicate_id(
                &rule.path,
                &source,
                rule.position,
                &rule.id,
                &rhai.path,
            ));
        }
        rule_names.insert(&rule.id, &rule.id);
        rule_names.insert(&rule.stem, &rule.id);
        if let Some(name) = &rule.name {
            rule_names.insert(name, &rule.id);
        }
    }
    for correlation in &sigma.correlations {
        rule_names.insert(&correlation.id, &correlation.id);
        if let Some(name) = &correlation.name {
            rule_names.insert(name, &correlation.id);
        }
        if let Some(stem) = correlation.path.file_stem().and_then(|s| s.to_str()) {
            rule_names.insert(stem, &correlation.id);
        }
    }
    // `when` conditions compile in the same sandbox rules run in.
    let (engine, _) = build_engine(&config.limits, &crate::intel::IntelHandle::default());
    let rules_incomplete = !problems.is_empty();
    // A config whose policy does not build is reported with the config; literal targets are
    // then checked by the executor alone.
    let policy = config.actions.policy(&config.redis.url).ok();
    let mut playbooks: Vec<Arc<Playbook>> = Vec::new();
    for path in files(&playbooks_dir, &["yaml", "yml"], &mut problems) {
        let Some(source) = read(&path, &mut problems) else {
            continue;
        };
        match load_playbook(
            &path,
            &source,
            &rule_names,
            rules_incomplete,
            &engine,
            policy.as_ref(),
        ) {
            Ok(playbook) => {
                if let Some(first) = playbooks.iter().find(|p| p.id == playbook.id) {
                    problems.push(Diagnostic::file(
                        &path,
                        "duplicate-playbook-id",
                        format!(
                            "playbook id `{}` is already used by `{}`",
                            playbook.id,
                            first.path.display()
                        ),
                    ));
                    continue;
                }
                playbooks.push(Arc::new(playbook));
            }
            Err(found) => problems.extend(found),
        }
    }

    let warninglists = match Warninglists::load_dir(&display_path(dir, Path::new(WARNINGLISTS_DIR)))
    {
        Ok(lists) => lists,
        Err(found) => {
            for message in found {
                let (file, message) = message
                    .split_once(": ")
                    .unwrap_or(("warninglists", message.as_str()));
                problems.push(Diagnostic::file(
                    Path::new(file),
                    "bad-warninglist",
                    message.to_string(),
                ));
            }
            Warninglists::default()
        }
    };
    if !problems.is_empty() {
        return Err(problems.sorted());
    }
    Ok(Content {
        warninglists,
        dir: dir.to_path_buf(),
        config,
        config_path,
        rules,
        playbooks,
        sigma,
    })
}

/// A second rule (Rhai or Sigma) with an id already taken: triggers and metrics name rules by id.
fn duplicate_id(
    path: &Path,
    source: &str,
    position: crate::diagnostics::Position,
    id: &str,
    first: &Path,
) -> Diagnostic {
    Diagnostic::at(
        path,
        source,
        position,
        "duplicate-rule-id",
        format!("rule id `{id}` is already used by `{}`", first.display()),
    )
}

/// The files in `dir` with one of `extensions`, sorted so load order (and output) is stable.
fn files(dir: &Path, extensions: &[&str], problems: &mut Diagnostics) -> Vec<PathBuf> {
    if !dir.exists() {
        return Vec::new();
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            problems.push(Diagnostic::file(
                dir,
                "unreadable",
                format!("cannot list the directory: {err}"),
            ));
            return Vec::new();
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| extensions.contains(&e))
        })
        .collect();
    paths.sort();
    paths
}

fn read(path: &Path, problems: &mut Diagnostics) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(err) => {
            problems.push(Diagnostic::file(
                path,
                "unreadable",
                format!("cannot read the file: {err}"),
            ));
            None
        }
    }
}
