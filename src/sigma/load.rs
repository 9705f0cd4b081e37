//! The loader: every Sigma file under some folders, parsed, with a report of what loaded, what
//! was skipped (and why) and what was refused (with diagnostics).
//!
//! Folders are walked recursively in sorted order so output is stable. A symbolic link is
//! followed only when it resolves inside the folder being loaded (a checkout cannot pull in
//! files from elsewhere on the host), and each directory is read once (a link loop ends).
//! Files larger than [`MAX_SIGMA_FILE_BYTES`] are refused unread.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::diagnostics::{Diagnostic, Diagnostics};

use super::SigmaConfig;
use super::ast::SigmaRule;
use super::filter::SigmaFilter;
use super::parse::{Document, RawCorrelation, Skipped, count_by, parse_file};

/// Largest Sigma file read. SigmaHQ's largest rule is about 40 KiB; a file of megabytes is not a
/// rule someone wrote, and reading it whole would cost memory for nothing.
pub const MAX_SIGMA_FILE_BYTES: u64 = 1024 * 1024;

/// What loading some folders of Sigma files gave.
#[derive(Debug, Clone, Default)]
pub struct SigmaLoad {
    pub rules: Vec<SigmaRule>,
    pub filters: Vec<SigmaFilter>,
    /// Correlation documents, as written, for the correlation parser.
    pub correlations: Vec<RawCorrelation>,
    pub skipped: Vec<Skipped>,
    /// One entry per refused document (or unreadable file): its problems, at least one.
    pub refused: Vec<Diagnostics>,
    /// How many files were read.
    pub files: usize,
}

impl SigmaLoad {
    /// Every problem of every refused document, sorted by file and position.
    pub fn diagnostics(&self) -> Diagnostics {
        let mut all = Diagnostics::default();
        for problems in &self.refused {
            all.extend(problems.clone());
        }
        all.sorted()
    }

    /// Skipped documents by reason key (`logsource windows/registry_set/-`), with their files.
    pub fn skipped_by_reason(&self) -> BTreeMap<String, Vec<&Path>> {
        let mut out: BTreeMap<String, Vec<&Path>> = BTreeMap::new();
        for skip in &self.skipped {
            out.entry(skip.reason.key()).or_default().push(&skip.path);
        }
        out
    }

    /// Refused documents counted by the code of their first problem.
    pub fn refused_by_code(&self) -> BTreeMap<&'static str, usize> {
        count_by(
            self.refused
                .iter()
                .filter_map(|problems| problems.iter().next().map(|d| d.code)),
        )
    }
}

/// Loads every `*.yml`/`*.yaml` file under each folder. A folder that does not exist is an error
/// (a configured folder that is not there is a mistake worth seeing).
pub fn load(folders: &[PathBuf], config: &SigmaConfig) -> SigmaLoad {
    let mut out = SigmaLoad::default();
    for folder in folders {
        let mut files = Vec::new();
        walk(folder, &mut files, &mut out.refused);
        for file in files {
            out.files += 1;
            match read_limited(&file) {
                Ok(source) => add_file(&mut out, &file, &source, config),
                Err(problem) => out.refused.push(single(problem)),
            }
        }
    }
    refuse_duplicates(&mut out);
    out
}

/// Loads one file's text, as [`load`] does for each file (tests and `palisade test` use it).
pub fn load_source(path: &Path, source: &str, config: &SigmaConfig) -> SigmaLoad {
    let mut out = SigmaLoad {
        files: 1,
        ..SigmaLoad::default()
    };
    add_file(&mut out, path, source, config);
    refuse_duplicates(&mut out);
    out
}

fn add_file(out: &mut SigmaLoad, path: &Path, source: &str, config: &SigmaConfig) {
    let parsed = parse_file(path, source, config);
    out.refused.extend(parsed.refused);
    for document in parsed.documents {
        match document {
            Document::Rule(rule) => out.rules.push(*rule),
            Document::Filter(filter) => out.filters.push(*filter),
            Document::Correlation(c) => out.correlations.push(*c),
            Document::Skipped(skip) => out.skipped.push(skip),
        }
    }
}

/// A second rule with an id (or name) already loaded is refused, naming both files: playbook
/// triggers, filters and correlations refer to rules by id, and one id meaning two rules would
/// make each of them ambiguous.
fn refuse_duplicates(out: &mut SigmaLoad) {
    let mut seen: HashMap<String, (PathBuf, usize)> = HashMap::new();
    let mut keep = Vec::with_capacity(out.rules.len());
    for rule in std::mem::take(&mut out.rules) {
        let mut clash = None;
        for key in std::iter::once(&rule.id).chain(rule.name.as_ref()) {
            if let Some((file, line)) = seen.get(key.as_ref()) {
                clash = Some((key.to_string(), file.clone(), *line));
                break;
            }
        }
        if let Some((key, file, line)) = clash {
            let source = std::fs::read_to_string(&rule.path).unwrap_or_default();
            out.refused.push(single(Diagnostic::at(
                &rule.path,
                &source,
                rule.position,
                "sigma-duplicate-id",
                format!(
                    "rule id or name `{key}` is already used by the rule in {}:{line}; ids must be unique",
                    file.display()
                ),
            )));
            continue;
        }
        seen.insert(rule.id.to_string(), (rule.path.clone(), rule.position.line));
        if let Some(name) = &rule.name {
            seen.insert(name.to_string(), (rule.path.clone(), rule.position.line));
        }
        keep.push(rule);
    }
    out.rules = keep;
}

fn single(diagnostic: Diagnostic) -> Diagnostics {
    let mut out = Diagnostics::default();
    out.push(diagnostic);
    out
}

/// Reads at most [`MAX_SIGMA_FILE_BYTES`]; a longer file is refused.
fn read_limited(path: &Path) -> Result<String, Diagnostic> {
    let file = std::fs::File::open(path).map_err(|err| {
        Diagnostic::file(path, "unreadable", format!("cannot read the file: {err}"))
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_SIGMA_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| {
            Diagnostic::file(path, "unreadable", format!("cannot read the file: {err}"))
        })?;
    if bytes.len() as u64 > MAX_SIGMA_FILE_BYTES {
        return Err(Diagnostic::file(
            path,
            "sigma-file-too-large",
            format!(
                "the file is larger than {MAX_SIGMA_FILE_BYTES} bytes, the limit for a Sigma file"
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|err| {
        Diagnostic::file(
            path,
            "sigma-not-utf8",
            format!(
                "the file is not UTF-8 text (invalid byte at offset {})",
                err.utf8_error().valid_up_to()
            ),
        )
    })
}

/// A `*.yml`/`*.yaml` file that is not a test sidecar (`x.tests.yaml`, see `cases.rs`).
fn is_sigma_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yml" || e == "yaml")
        && !super::cases::is_sidecar(path)
}

/// The Sigma files under `root`, sorted, following links only inside it.
fn walk(root: &Path, files: &mut Vec<PathBuf>, refused: &mut Vec<Diagnostics>) {
    let canonical_root = match std::fs::canonicalize(root) {
        Ok(root) => root,
        Err(err) => {
            refused.push(single(Diagnostic::file(
                root,
                "unreadable",
                format!("cannot read the Sigma folder: {err}"),
            )));
            return;
        }
    };
    if canonical_root.is_file() {
        if is_sigma_file(root) {
            files.push(root.to_path_buf());
        }
        return;
    }
    let mut visited: BTreeSet<PathBuf> = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    let mut found = Vec::new();
    while let Some(dir) = stack.pop() {
        let Ok(real) = std::fs::canonicalize(&dir) else {
            continue;
        };
        if !visited.insert(real) {
            continue;
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) => {
                refused.push(single(Diagnostic::file(
                    &dir,
                    "unreadable",
                    format!("cannot list the directory: {err}"),
                )));
                continue;
            }
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let (is_dir, is_file) = if meta.file_type().is_symlink() {
                match std::fs::canonicalize(&path) {
                    Ok(target) if target.starts_with(&canonical_root) => {
                        (target.is_dir(), target.is_file())
                    }
                    Ok(_) => {
                        if is_sigma_file(&path) || path.is_dir() {
                            refused.push(single(Diagnostic::file(
                                &path,
                                "sigma-link-outside",
                                "a symbolic link to outside the Sigma folder is not followed",
                            )));
                        }
                        continue;
                    }
                    Err(_) => continue,
                }
            } else {
                (meta.is_dir(), meta.is_file())
            };
            if is_dir {
                stack.push(path);
            } else if is_file && is_sigma_file(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    files.extend(found);
}
