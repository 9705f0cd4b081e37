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
use crate::intel::warninglist::Warninglist;
use crate::playbooks::{Playbook, load_playbook};
use crate::rules::{
    Exceptions, Library, Lists, RuleDefinition, build_engine, load_exceptions, load_helpers,
    load_list, load_rule_in,
};

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
    /// Named lists (`lists/*.yaml`) and shared helper functions (`lib/*.rhai`).
    pub library: Library,
    /// Per-rule exceptions (`exceptions/*.yaml`).
    pub exceptions: Arc<Exceptions>,
    /// YARA rules (`yara/*.yar`), compiled once here (docs/intel.md, "YARA").
    pub yara: crate::intel::yara::YaraRules,
    /// Problems that do not stop the content from loading (reads of event fields the model
    /// does not know), for `validate` and the commands to show.
    pub warnings: Diagnostics,
}

/// Where warninglists are read from, relative to the content directory.
pub const WARNINGLISTS_DIR: &str = "warninglists";
/// Where named lists are read from, relative to the content directory.
pub const LISTS_DIR: &str = "lists";
/// Where shared helper functions are read from, relative to the content directory.
pub const LIB_DIR: &str = "lib";
/// Where per-rule exceptions are read from, relative to the content directory.
pub const EXCEPTIONS_DIR: &str = "exceptions";
/// Where YARA rules are read from, relative to the content directory.
pub const YARA_DIR: &str = crate::intel::yara::YARA_DIR;

impl Content {
    /// The intel a command runs with: the live indicators in this content's state database
    /// (when it exists; nothing is created) marked against its warninglists.
    pub async fn intel(&self) -> Result<crate::intel::IntelHandle, crate::intel::LoadError> {
        crate::intel::from_state_file(
            &self.resolve(&self.config.state.path),
            &self.warninglists,
            self.config.intel.max_prefix,
        )
        .await
    }

    /// The Sigma correlations that run (their own status, as for rules).
    pub fn running_correlations(&self) -> Vec<crate::sigma::correlation::Correlation> {
        let config = &self.config.rules;
        self.sigma
            .correlations
            .iter()
            .filter(|c| config.runs(true, c.status))
            .cloned()
            .collect()
    }

    /// The loaded rules (Rhai, Sigma and correlations) that do not run, and why.
    pub fn not_run(&self) -> crate::rules::NotRun {
        let config = &self.config.rules;
        let mut not_run = crate::rules::NotRun::default();
        for rule in &self.rules {
            not_run.count(config, rule.enabled, rule.status);
        }
        for rule in &self.sigma.rules {
            not_run.count(config, true, rule.status.unwrap_or_default());
        }
        for correlation in &self.sigma.correlations {
            not_run.count(config, true, correlation.status);
        }
        not_run
    }

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
    // The config names the cap for every other file; the config itself is held to the default.
    let config = match &config_path {
        None => Config::default(),
        Some(path) => match read(path, config::DEFAULT_MAX_FILE_BYTES, &mut problems) {
            Some(text) => config::parse(path, &text).unwrap_or_else(|found| {
                problems.extend(found);
                Config::default()
            }),
            None => Config::default(),
        },
    };
    let cap = config.content.max_file_bytes;

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

    let mut warnings = Diagnostics::default();
    let library = load_library(dir, &config.limits, cap, &mut problems);
    let mut rules: Vec<Arc<RuleDefinition>> = Vec::new();
    let mut rules_by_id: HashMap<Arc<str>, Arc<RuleDefinition>> = HashMap::new();
    for path in files(&rules_dir, &["rhai"], &mut problems) {
        let Some(source) = read(&path, cap, &mut problems) else {
            continue;
        };
        match load_rule_in(&path, &source, &config.limits, &library) {
            Ok(rule) => {
                warnings.extend(rule.warnings.clone());
                warnings.extend(unknown_event_reads(
                    &path,
                    &rule.source,
                    &rule.extra_reads,
                    &config.events.extra_fields,
                    &format!("rule `{}`", rule.id),
                ));
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
    // The Sigma loader reads its files whole: one over the cap is refused here, unread, and the
    // Sigma rules are then not assembled (the set is refused either way).
    let oversized = oversized_sigma_files(&rules_dir, &sigma_folders, cap);
    let sigma = if oversized.is_empty() {
        crate::sigma::assemble(&rules_dir, &sigma_folders, &config.sigma, &mut problems)
    } else {
        for (path, size) in oversized {
            problems.push(too_large(&path, size, cap));
        }
        crate::sigma::SigmaContent::default()
    };
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
    let mut known_ids: Vec<&str> = rules_by_id.keys().map(|id| &**id).collect();
    known_ids.extend(sigma.rules.iter().map(|rule| &*rule.id));
    known_ids.extend(sigma.correlations.iter().map(|c| &*c.id));
    known_ids.extend(crate::detection::BUILT_IN_DETECTORS.iter().copied());
    known_ids.sort_unstable();
    let mut exceptions = Vec::new();
    let now = jiff::Timestamp::now();
    for path in files(
        &display_path(dir, Path::new(EXCEPTIONS_DIR)),
        &["yaml", "yml"],
        &mut problems,
    ) {
        let Some(source) = read(&path, cap, &mut problems) else {
            continue;
        };
        match load_exceptions(&path, &source, &known_ids, now) {
            Ok((found, expired)) => {
                exceptions.extend(found);
                warnings.extend(expired);
            }
            Err(found) => problems.extend(found),
        }
    }
    let exceptions = Arc::new(Exceptions::new(exceptions));
    // `when` conditions compile in the same sandbox rules run in.
    let (engine, _) = build_engine(&config.limits, &crate::intel::IntelHandle::default());
    let rules_incomplete = !problems.is_empty();
    // A config whose policy does not build is reported with the config; literal targets are
    // then checked by the executor alone.
    let policy = config.actions.policy(&config.redis.url).ok();
    let mut playbooks: Vec<Arc<Playbook>> = Vec::new();
    for path in files(&playbooks_dir, &["yaml", "yml"], &mut problems) {
        let Some(source) = read(&path, cap, &mut problems) else {
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
                warnings.extend(unknown_event_reads(
                    &path,
                    &source,
                    &playbook.extra_reads,
                    &config.events.extra_fields,
                    &format!("playbook `{}`", playbook.id),
                ));
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

    let yara = load_yara(dir, cap, &mut problems);
    let warninglists = load_warninglists(&display_path(dir, Path::new(WARNINGLISTS_DIR)), cap)
        .unwrap_or_else(|found| {
            problems.extend(found);
            Warninglists::default()
        });
    if !problems.is_empty() {
        // Warnings of the files that loaded are shown with the errors (a file with errors has
        // its own warnings checked once it loads).
        problems.extend(warnings);
        return Err(problems.sorted());
    }
    Ok(Content {
        warnings: warnings.sorted(),
        warninglists,
        dir: dir.to_path_buf(),
        config,
        config_path,
        rules,
        playbooks,
        sigma,
        library,
        exceptions,
        yara,
    })
}

/// Reads and compiles `yara/*.yar` (and `*.yara`). A build without the `yara` feature refuses
/// the folder outright: rules a team relies on must not be silently ignored.
fn load_yara(dir: &Path, cap: u64, problems: &mut Diagnostics) -> crate::intel::yara::YaraRules {
    use crate::intel::yara;
    let folder = display_path(dir, Path::new(yara::YARA_DIR));
    if !yara::SUPPORTED && folder.is_dir() {
        problems.push(Diagnostic::file(
            &folder,
            "yara-unsupported",
            yara::UNSUPPORTED,
        ));
        return yara::YaraRules::default();
    }
    let sources: Vec<(PathBuf, String)> = files(&folder, yara::YARA_EXTENSIONS, problems)
        .into_iter()
        .filter_map(|path| read(&path, cap, problems).map(|text| (path, text)))
        .collect();
    yara::compile(&sources, problems)
}

/// Loads `lists/*.yaml` and `lib/*.rhai`. A list name used twice, or a helper defined in two
/// files, is a problem at the second; what loaded is returned either way, so rules are still
/// checked against it.
fn load_library(
    dir: &Path,
    limits: &crate::rules::RuleLimits,
    cap: u64,
    problems: &mut Diagnostics,
) -> Library {
    let mut lists: Vec<crate::rules::NamedList> = Vec::new();
    for path in files(
        &display_path(dir, Path::new(LISTS_DIR)),
        &["yaml", "yml"],
        problems,
    ) {
        let Some(source) = read(&path, cap, problems) else {
            continue;
        };
        match load_list(&path, &source) {
            Ok(list) => {
                if let Some(first) = lists.iter().find(|l| l.name == list.name) {
                    problems.push(Diagnostic::at(
                        &path,
                        &source,
                        crate::diagnostics::locate(
                            &source,
                            &crate::diagnostics::YamlPath::root().key("name"),
                        ),
                        "duplicate-list-name",
                        format!(
                            "list name `{}` is already used by `{}`",
                            list.name,
                            first.path.display()
                        ),
                    ));
                    continue;
                }
                lists.push(list);
            }
            Err(found) => problems.extend(found),
        }
    }
    let mut helpers: Vec<(PathBuf, rhai::AST)> = Vec::new();
    let mut defined: HashMap<(String, usize), PathBuf> = HashMap::new();
    for path in files(&display_path(dir, Path::new(LIB_DIR)), &["rhai"], problems) {
        let Some(source) = read(&path, cap, problems) else {
            continue;
        };
        match load_helpers(&path, &source, limits) {
            Ok(ast) => {
                let mut clash = false;
                for function in ast.iter_functions() {
                    let key = (function.name.to_string(), function.params.len());
                    if let Some(first) = defined.get(&key) {
                        clash = true;
                        problems.push(Diagnostic::at(
                            &path,
                            &source,
                            crate::rules::text_position(&source, 0, &format!("fn {}", key.0)),
                            "duplicate-helper",
                            format!(
                                "helper `{}` with {} parameter(s) is already defined in `{}`",
                                key.0,
                                key.1,
                                first.display()
                            ),
                        ));
                    } else {
                        defined.insert(key, path.clone());
                    }
                }
                if !clash {
                    helpers.push((path, ast));
                }
            }
            Err(found) => problems.extend(found),
        }
    }
    Library::new(Lists::new(lists), helpers)
}

/// A warning for each read of an `event.*` name that is neither a typed field nor covered by
/// `events.extra_fields`: a typo there reads `()` on every event and is otherwise only found
/// when a step is skipped or refused for a missing value.
fn unknown_event_reads(
    path: &Path,
    source: &str,
    reads: &[crate::rules::references::FieldRead],
    declared: &[String],
    context: &str,
) -> Diagnostics {
    let mut found = Diagnostics::default();
    for read in reads.iter().filter(|read| !read.is_declared(declared)) {
        let first = read.path.first().map_or("", String::as_str);
        let hint = crate::rules::references::nearest_field(first)
            .map(|field| format!(" (did you mean `{field}`?)"))
            .unwrap_or_default();
        found.push(
            Diagnostic::at(
                path,
                source,
                read.position,
                "unknown-event-field",
                format!(
                    "`{}` is not an event field{hint}; it reads nothing unless sensors send it: if they do, list it in the config's `events.extra_fields`",
                    read.display()
                ),
            )
            .with_context(context)
            .warning(),
        );
    }
    found
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

/// Loads every `*.json` in `dir` as a warninglist (none when the folder does not exist). A
/// warninglist is content like a rule: each file is read as every content file is, at most `cap`
/// bytes (`content.max_file_bytes`), and a file over it, unreadable or not a warninglist is a
/// problem naming it.
pub fn load_warninglists(dir: &Path, cap: u64) -> Result<Warninglists, Diagnostics> {
    let mut problems = Diagnostics::default();
    let mut lists = Vec::new();
    for path in files(dir, &["json"], &mut problems) {
        let Some(text) = read(&path, cap, &mut problems) else {
            continue;
        };
        match Warninglist::parse(&text) {
            Ok(list) => lists.push(list),
            Err(problem) => problems.push(Diagnostic::file(
                &path,
                "bad-warninglist",
                problem.to_string(),
            )),
        }
    }
    if problems.is_empty() {
        Ok(Warninglists::new(lists))
    } else {
        Err(problems)
    }
}

/// The files in `dir` with one of `extensions`, sorted so load order (and output) is stable.
///
/// Anything with a content file's name that is not a folder is listed, whatever it is: a link
/// that loops or points nowhere, or a file that cannot be read, then fails [`read`] with a
/// problem naming it, instead of silently leaving the set (a running engine would take that as
/// the rule being removed).
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
            path.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
                && !path.is_dir()
        })
        .collect();
    paths.sort();
    paths
}

/// Reads a content file as UTF-8 text, at most `cap` bytes of it: a file that cannot be opened
/// (permissions, a link loop, a dangling link), is not a regular file, is larger than `cap`, or
/// is not UTF-8 is a problem naming it, and nothing past the cap is read.
fn read(path: &Path, cap: u64, problems: &mut Diagnostics) -> Option<String> {
    match read_bounded(path, cap) {
        Ok(text) => Some(text),
        Err(problem) => {
            problems.push(*problem);
            None
        }
    }
}

fn read_bounded(path: &Path, cap: u64) -> Result<String, Box<Diagnostic>> {
    use std::io::Read;
    let unreadable = |err: std::io::Error| {
        Box::new(Diagnostic::file(
            path,
            "unreadable",
            format!("cannot read the file: {err}"),
        ))
    };
    // Judged before opening: opening a FIFO named like a rule would block the load.
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(Box::new(Diagnostic::file(
            path,
            "unreadable",
            "cannot read the file: not a regular file",
        )));
    }
    if meta.len() > cap {
        return Err(Box::new(too_large(path, meta.len(), cap)));
    }
    let file = std::fs::File::open(path).map_err(unreadable)?;
    // The size can change between the check and the read (a file being written): read one byte
    // past the cap at most, so a growing file is caught too.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > cap {
        return Err(Box::new(too_large(path, bytes.len() as u64, cap)));
    }
    String::from_utf8(bytes).map_err(|err| {
        let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        let column = valid
            .iter()
            .rev()
            .take_while(|b| **b != b'\n')
            .filter(|b| (**b & 0xC0) != 0x80)
            .count()
            + 1;
        let mut problem = Diagnostic::file(
            path,
            "not-utf8",
            format!(
                "the file is not UTF-8 text (invalid byte at offset {})",
                err.utf8_error().valid_up_to()
            ),
        );
        problem.line = line;
        problem.column = column;
        Box::new(problem)
    })
}

fn too_large(path: &Path, size: u64, cap: u64) -> Diagnostic {
    Diagnostic::file(
        path,
        "file-too-large",
        format!(
            "the file is {size} bytes, over the {cap}-byte cap (`content.max_file_bytes`); it was not read"
        ),
    )
}

/// Sigma files (`*.yml`, `*.yaml`) under the rules folder and the Sigma folders larger than
/// `cap`, found by their size alone. Links are not followed (the Sigma loader judges them).
fn oversized_sigma_files(rules: &Path, folders: &[PathBuf], cap: u64) -> Vec<(PathBuf, u64)> {
    let mut found = Vec::new();
    let mut stack: Vec<(PathBuf, usize)> = std::iter::once(rules.to_path_buf())
        .chain(folders.iter().cloned())
        .map(|dir| (dir, 0))
        .collect();
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            if meta.is_dir() && depth < 32 {
                stack.push((path, depth + 1));
            } else if meta.is_file()
                && meta.len() > cap
                && path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e == "yml" || e == "yaml")
            {
                found.push((path, meta.len()));
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    const RULE: &str = r#"
let rule = #{
    id: "test-rule",
    title: "A test rule",
    severity: "high",
    events: ["process_create"],
    filter: #{ name: ["cmd.exe"] },
};
fn detect(event) { #{ entity: "process" } }
"#;

    /// Content with one good rule, so a problem comes from the file under test alone.
    fn content_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        std::fs::create_dir_all(dir.path().join("playbooks")).unwrap();
        std::fs::write(dir.path().join("rules/good.rhai"), RULE).unwrap();
        dir
    }

    fn problems(dir: &Path) -> Vec<(String, &'static str, String)> {
        let found = load(dir, None).expect_err("the content must not validate");
        found
            .iter()
            .map(|p| {
                (
                    p.file.file_name().unwrap().to_string_lossy().into_owned(),
                    p.code,
                    p.render(),
                )
            })
            .collect()
    }

    #[test]
    fn a_list_name_or_helper_defined_twice_is_refused_at_the_second_file() {
        let dir = content_dir();
        for sub in [LISTS_DIR, LIB_DIR] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(
            dir.path().join("lists/a.yaml"),
            "name: admins\nvalues: [a]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("lists/b.yaml"),
            "# the same name again\nname: admins\nvalues: [b]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("lib/a.rhai"), "fn helper(x) { x }\n").unwrap();
        std::fs::write(
            dir.path().join("lib/b.rhai"),
            "fn other() { 1 }\n\nfn helper(y) { y }\n",
        )
        .unwrap();
        let found: Vec<(String, usize, usize, &str)> = load(dir.path(), None)
            .unwrap_err()
            .into_iter()
            .map(|d| (d.file.display().to_string(), d.line, d.column, d.code))
            .collect();
        let root = dir.path().display().to_string();
        assert_eq!(
            found,
            [
                (format!("{root}/lib/b.rhai"), 3, 1, "duplicate-helper"),
                (format!("{root}/lists/b.yaml"), 2, 7, "duplicate-list-name"),
            ]
        );
    }

    #[test]
    fn the_test_rule_loads() {
        let dir = content_dir();
        assert_eq!(load(dir.path(), None).unwrap().rules.len(), 1);
    }

    #[test]
    fn a_rule_file_turned_into_a_symlink_loop_is_a_problem_not_a_removal() {
        let dir = content_dir();
        let rules = dir.path().join("rules");
        std::os::unix::fs::symlink(rules.join("loop_b.rhai"), rules.join("loop_a.rhai")).unwrap();
        std::os::unix::fs::symlink(rules.join("loop_a.rhai"), rules.join("loop_b.rhai")).unwrap();
        let found = problems(dir.path());
        let names: Vec<_> = found.iter().map(|(n, c, _)| (n.as_str(), *c)).collect();
        assert_eq!(
            names,
            vec![("loop_a.rhai", "unreadable"), ("loop_b.rhai", "unreadable")]
        );
        assert!(found[0].2.contains("symbolic links"), "{}", found[0].2);
    }

    #[test]
    fn a_dangling_playbook_link_is_a_problem_not_a_removal() {
        let dir = content_dir();
        std::os::unix::fs::symlink(
            dir.path().join("nowhere.yaml"),
            dir.path().join("playbooks/contain.yaml"),
        )
        .unwrap();
        let found = problems(dir.path());
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].0.as_str(), found[0].1),
            ("contain.yaml", "unreadable")
        );
    }

    #[test]
    fn a_fifo_named_like_a_rule_is_refused_without_blocking() {
        let dir = content_dir();
        let fifo = dir.path().join("rules/pipe.rhai");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let found = problems(dir.path());
        assert_eq!(
            (found[0].0.as_str(), found[0].1),
            ("pipe.rhai", "unreadable")
        );
        assert!(found[0].2.contains("not a regular file"), "{}", found[0].2);
    }

    #[test]
    fn a_non_utf8_rule_names_its_line() {
        let dir = content_dir();
        let mut bytes = b"// first line\n// second \xff line\n".to_vec();
        bytes.extend_from_slice(RULE.as_bytes());
        std::fs::write(dir.path().join("rules/latin1.rhai"), bytes).unwrap();
        let found = load(dir.path(), None).unwrap_err();
        let problem = found.iter().next().unwrap();
        assert_eq!(problem.code, "not-utf8");
        assert_eq!((problem.line, problem.column), (2, 11));
    }

    #[test]
    fn a_rule_file_over_the_cap_is_refused_unread_and_not_quoted() {
        let dir = content_dir();
        // One line of 5 MiB: the shape that once put the whole file into the log.
        let line = "x".repeat(5 * 1024 * 1024);
        std::fs::write(dir.path().join("rules/huge.rhai"), &line).unwrap();
        std::fs::write(dir.path().join("playbooks/huge.yaml"), &line).unwrap();
        std::fs::write(dir.path().join("rules/huge_sigma.yml"), &line).unwrap();
        let found = problems(dir.path());
        let names: Vec<_> = found.iter().map(|(n, c, _)| (n.as_str(), *c)).collect();
        assert_eq!(
            names,
            vec![
                ("huge.yaml", "file-too-large"),
                ("huge.rhai", "file-too-large"),
                ("huge_sigma.yml", "file-too-large"),
            ]
        );
        for (_, _, rendered) in &found {
            assert!(rendered.len() < 300, "{rendered}");
            assert!(rendered.contains("5242880 bytes"), "{rendered}");
        }
    }

    /// Defect: a warninglist file was read whole whatever its size (and a huge one quoted
    /// back as a parse error); it is content like a rule and held to the same cap, unread.
    #[test]
    fn a_warninglist_over_the_file_cap_is_refused_unread() {
        let dir = content_dir();
        std::fs::create_dir_all(dir.path().join(WARNINGLISTS_DIR)).unwrap();
        let line = "x".repeat(5 * 1024 * 1024);
        std::fs::write(dir.path().join("warninglists/huge.json"), &line).unwrap();
        let found = problems(dir.path());
        let names: Vec<_> = found.iter().map(|(n, c, _)| (n.as_str(), *c)).collect();
        assert_eq!(names, vec![("huge.json", "file-too-large")]);
        assert!(found[0].2.contains("5242880 bytes"), "{}", found[0].2);
        assert!(found[0].2.len() < 300, "{}", found[0].2);

        // The configured cap holds for warninglists too: a good list over it is refused.
        std::fs::remove_file(dir.path().join("warninglists/huge.json")).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("warninglists/public-dns-v4.json"),
            dir.path().join("warninglists/dns.json"),
        )
        .unwrap();
        assert!(load(dir.path(), None).is_ok());
        let size = std::fs::metadata(dir.path().join("warninglists/dns.json"))
            .unwrap()
            .len();
        std::fs::write(
            dir.path().join("palisade.yaml"),
            format!("content: {{max_file_bytes: {}}}\n", size - 1),
        )
        .unwrap();
        let names: Vec<_> = problems(dir.path())
            .into_iter()
            .map(|(n, c, _)| (n, c))
            .collect();
        assert!(
            names.contains(&("dns.json".to_string(), "file-too-large")),
            "{names:?}"
        );
    }

    #[test]
    fn public_ipv4_resolver_is_warninglisted() {
        use crate::detection::IndicatorKind;

        // Before, the shipped lists covered IPv6 resolvers only, and an indicator on 8.8.8.8
        // was acted on.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("warninglists");
        let lists = load_warninglists(&root, config::DEFAULT_MAX_FILE_BYTES).unwrap();
        for resolver in ["8.8.8.8", "8.8.4.4", "1.1.1.1", "9.9.9.9", "208.67.222.222"] {
            assert_eq!(
                lists.listing(IndicatorKind::Ip, resolver),
                Some("List of known IPv4 public DNS resolvers"),
                "{resolver}"
            );
        }
        assert!(
            lists
                .listing(IndicatorKind::Ip, "2001:4860:4860::8844")
                .is_some()
        );
        // Shared infrastructure: a CDN edge, a certificate status responder.
        assert!(lists.listing(IndicatorKind::Ip, "104.16.1.1").is_some());
        assert!(lists.listing(IndicatorKind::Domain, "c.pki.goog").is_some());
        // A C2 address that is on none of them stays actionable.
        assert_eq!(lists.listing(IndicatorKind::Ip, "185.12.33.4"), None);
    }

    #[test]
    fn the_file_cap_is_configurable() {
        let dir = content_dir();
        std::fs::write(
            dir.path().join("palisade.yaml"),
            "content: {max_file_bytes: 64}\n",
        )
        .unwrap();
        let found = problems(dir.path());
        assert_eq!(
            (found[0].0.as_str(), found[0].1),
            ("good.rhai", "file-too-large")
        );
    }

    #[test]
    fn a_long_line_is_quoted_cut() {
        let source = format!("{}\n", "y".repeat(10_000));
        let near = Diagnostic::at(
            Path::new("rules/x.rhai"),
            &source,
            crate::diagnostics::Position::new(1, 5),
            "rhai-syntax",
            "bad",
        );
        assert!(near.render().len() < 1_000, "{}", near.render());
        let far = Diagnostic::at(
            Path::new("rules/x.rhai"),
            &source,
            crate::diagnostics::Position::new(1, 9_000),
            "rhai-syntax",
            "bad",
        );
        assert!(far.render().len() < 200, "{}", far.render());
    }

    /// The problems the playbook loader finds in `source`, loaded as `playbooks/p.yaml`
    /// against no rules.
    fn refused_playbook(source: &str) -> Vec<Diagnostic> {
        let (engine, _) = build_engine(
            &crate::rules::RuleLimits::default(),
            &crate::intel::IntelHandle::default(),
        );
        load_playbook(
            Path::new("playbooks/p.yaml"),
            source,
            &crate::playbooks::RuleNames::default(),
            false,
            &engine,
            None,
        )
        .expect_err("the playbook should be refused")
        .into_iter()
        .collect()
    }

    // Found by the `config_parse` fuzz target: two empty keys (`? ` followed by comments) in one
    // mapping sent the search for the duplicate's position into an endless loop, so `validate` hung.
    #[test]
    fn two_empty_keys_in_one_mapping_are_refused_without_hanging() {
        let source = "? #hema.j\n\n\n\n\n\n\n\n\n\n\n|\n\n\n\n\n? ##ma.\n\n\n\n|\n\n\n|\n\n\n\n\n? ## # #wtion";
        let started = Instant::now();
        assert!(!refused_playbook(source).is_empty());
        assert!(started.elapsed() < Duration::from_secs(2));
        let started = Instant::now();
        let config = config::parse(Path::new("palisade.yaml"), source);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(config.is_err());
    }

    /// Copies the shipped content into a fresh directory.
    fn shipped_content() -> tempfile::TempDir {
        fn copy_tree(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).expect("creates");
            for entry in std::fs::read_dir(from).expect("lists") {
                let path = entry.expect("entry").path();
                let target = to.join(path.file_name().expect("a name"));
                if path.is_dir() {
                    copy_tree(&path, &target);
                } else {
                    std::fs::copy(&path, &target).expect("copies");
                }
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().expect("a temporary directory");
        for sub in ["rules", "playbooks", "warninglists", "models"] {
            let from = root.join(sub);
            if from.is_dir() {
                copy_tree(&from, &dir.path().join(sub));
            }
        }
        dir
    }

    // Item 10: a playbook saved with a UTF-8 byte-order mark got `missing field title`; rules and the
    // config take one too.
    #[test]
    fn content_saved_with_a_byte_order_mark_loads() {
        let dir = shipped_content();
        let with_bom = |path: &Path| {
            let text = std::fs::read_to_string(path).expect("reads");
            std::fs::write(path, format!("\u{feff}{text}")).expect("writes");
        };
        with_bom(&dir.path().join("playbooks/block-c2.yaml"));
        with_bom(&dir.path().join("rules/intel_c2_connection.rhai"));
        std::fs::write(dir.path().join(CONFIG_FILE), "\u{feff}# comments only\n").expect("writes");
        let content = match load(dir.path(), None) {
            Ok(content) => content,
            Err(found) => panic!("{}", found.render()),
        };
        assert!(content.playbooks.iter().any(|p| &*p.id == "block-c2"));
        assert!(
            content
                .rules
                .iter()
                .any(|r| &*r.id == "intel-c2-connection")
        );
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "\u{feff}actions:\n  dry_run: true\n",
        )
        .expect("writes");
        assert!(load(dir.path(), None).is_ok());
    }
}
