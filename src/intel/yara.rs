//! YARA rules from the content's `yara/` folder, and scanning files with them (docs/intel.md,
//! "YARA").
//!
//! The rules are compiled once when the content loads, so a syntax error is a `validate`
//! problem at its `file:line:col` and never a surprise at scan time. Scanning reads only
//! regular files, at most `max_bytes` of each, and never follows a link to a file outside the
//! roots it was given: a scan of `/srv/uploads` must not read `/etc/shadow` through a link an
//! attacker placed there. The engine is the `yara-x` crate, built with the `yara` feature only;
//! without it, the types here exist so the rest of palisade can say so.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::diagnostics::{Diagnostic, Diagnostics, Position};

/// Where YARA rules are read from, relative to the content directory.
pub const YARA_DIR: &str = "yara";
/// The file name endings read as YARA rules.
pub const YARA_EXTENSIONS: &[&str] = &["yar", "yara"];

/// Whether this build can compile and scan with YARA rules.
pub const SUPPORTED: bool = cfg!(feature = "yara");

/// What a build without the `yara` feature says when YARA is asked for.
pub const UNSUPPORTED: &str =
    "YARA rules need a palisade built with the `yara` feature (cargo build --features yara)";

/// The rules in use, shared by `file.scan` and the reload that swaps in new ones.
pub type YaraHandle = std::sync::Arc<arc_swap::ArcSwap<YaraRules>>;

/// The compiled rules of the `yara/` folder (none when the folder is absent).
#[derive(Clone, Default)]
pub struct YaraRules {
    #[cfg(feature = "yara")]
    compiled: Option<std::sync::Arc<yara_x::Rules>>,
    /// The rule files, in load order.
    pub files: Vec<PathBuf>,
    /// Each file's path and the sha256 of its text, so a reload can say which files changed.
    pub fingerprints: Vec<(String, String)>,
}

impl fmt::Debug for YaraRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YaraRules")
            .field("files", &self.files)
            .field("rules", &self.rule_count())
            .finish()
    }
}

impl PartialEq for YaraRules {
    /// Two loads are the same when they read the same texts from the same files.
    fn eq(&self, other: &YaraRules) -> bool {
        self.fingerprints == other.fingerprints
    }
}

impl YaraRules {
    /// How many rules were compiled.
    pub fn rule_count(&self) -> usize {
        #[cfg(feature = "yara")]
        {
            self.compiled.as_ref().map_or(0, |rules| rules.iter().len())
        }
        #[cfg(not(feature = "yara"))]
        {
            0
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rule_count() == 0
    }
}

/// Compiles the rule files `(path, text)` (already read and bounded by the content loader).
/// Every file's errors are reported at their place; what compiled is returned either way, so
/// one broken file does not hide the problems of the others.
pub fn compile(sources: &[(PathBuf, String)], problems: &mut Diagnostics) -> YaraRules {
    let files: Vec<PathBuf> = sources.iter().map(|(path, _)| path.clone()).collect();
    let fingerprints = sources
        .iter()
        .map(|(path, text)| {
            let digest = <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            (path.display().to_string(), hex)
        })
        .collect();
    #[cfg(not(feature = "yara"))]
    {
        if let Some((first, _)) = sources.first() {
            problems.push(Diagnostic::file(first, "yara-unsupported", UNSUPPORTED));
        }
        YaraRules {
            files,
            fingerprints,
        }
    }
    #[cfg(feature = "yara")]
    {
        if sources.is_empty() {
            return YaraRules {
                compiled: None,
                files,
                fingerprints,
            };
        }
        let mut compiler = yara_x::Compiler::new();
        // Every file in one namespace: a rule name used in two files is a mistake to report,
        // and scan output names rules without a namespace to disambiguate.
        for (path, text) in sources {
            let origin = path.display().to_string();
            let source = yara_x::SourceCode::from(text.as_str()).with_origin(origin.as_str());
            if let Err(err) = compiler.add_source(source) {
                problems.push(compile_problem(path, text, &err));
            }
        }
        let compiled = compiler.build();
        YaraRules {
            compiled: Some(std::sync::Arc::new(compiled)),
            files,
            fingerprints,
        }
    }
}

/// A `yara-x` compile error as a diagnostic at the start of its first label's span (a byte
/// offset into the file's text).
#[cfg(feature = "yara")]
fn compile_problem(path: &Path, text: &str, err: &yara_x::errors::CompileError) -> Diagnostic {
    let label = err.labels().next();
    let position = label.as_ref().map_or(Position::START, |label| {
        byte_position(text, label.span().start())
    });
    let detail = label
        .as_ref()
        .map(|label| label.text().to_string())
        .filter(|text| !text.is_empty());
    let message = match detail {
        Some(detail) => format!("YARA {}: {detail}", err.title()),
        None => format!("YARA {}", err.title()),
    };
    Diagnostic::at(path, text, position, "yara-invalid", message)
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
pub fn byte_position(text: &str, offset: usize) -> Position {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Position::new(line, column)
}

/// Bounds on one scan.
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    /// Files larger than this are skipped, not read.
    pub max_bytes: u64,
    /// The time budget of each file's scan.
    pub timeout: Duration,
}

/// One rule that matched a file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleMatch {
    pub rule: String,
    pub tags: Vec<String>,
    /// The rule's `meta:` section, values as text.
    pub meta: Vec<(String, String)>,
}

/// A file at least one rule matched, with its hashes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileMatch {
    pub path: PathBuf,
    pub sha256: String,
    pub sha1: String,
    pub md5: String,
    pub rules: Vec<RuleMatch>,
}

impl FileMatch {
    /// The indicators a match stands for: the file's hashes, from source `yara`, with the
    /// rules' names and meta as the threat and the rule names as tags.
    pub fn indicators(&self) -> Vec<crate::intel::Indicator> {
        use crate::intel::{Indicator, IndicatorKind};
        let threat = self
            .rules
            .iter()
            .map(|m| {
                if m.meta.is_empty() {
                    m.rule.clone()
                } else {
                    let meta: Vec<String> =
                        m.meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("{} ({})", m.rule, meta.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        let tags: Vec<String> = self
            .rules
            .iter()
            .map(|m| format!("yara:{}", m.rule))
            .collect();
        [
            (IndicatorKind::Sha256, &self.sha256),
            (IndicatorKind::Sha1, &self.sha1),
            (IndicatorKind::Md5, &self.md5),
        ]
        .into_iter()
        .map(|(kind, value)| {
            let mut indicator = Indicator::new(kind, value.clone(), "yara");
            // A rule a team wrote and loaded is a strong statement about the file: rated like
            // an analyst's own list rather than a third-party feed.
            indicator.confidence = 90;
            indicator.severity = 80;
            indicator.threat = Some(crate::text::inert(&threat).chars().take(512).collect());
            indicator.tags = tags.clone();
            indicator.reference = Some(self.path.display().to_string());
            indicator
        })
        .collect()
    }
}

/// Why a path was not scanned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// What a scan of some paths found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ScanReport {
    pub scanned: usize,
    pub matches: Vec<FileMatch>,
    pub skipped: Vec<Skipped>,
}

/// Why a scan could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{UNSUPPORTED}")]
    Unsupported,
    #[error("no YARA rules are loaded (put `.yar` files in the content's `yara/` folder)")]
    NoRules,
    #[error("`{path}` is outside the scan roots ({roots})")]
    OutsideRoots { path: PathBuf, roots: String },
    #[error("cannot scan `{path}`: {reason}")]
    Refused { path: PathBuf, reason: String },
    #[error("the scan of `{path}` ran out of its time budget")]
    Timeout { path: PathBuf },
}

/// The canonical forms of `roots`; a root that does not exist is an error naming it.
pub fn canonical_roots(roots: &[PathBuf]) -> Result<Vec<PathBuf>, ScanError> {
    roots
        .iter()
        .map(|root| {
            std::fs::canonicalize(root).map_err(|err| ScanError::Refused {
                path: root.clone(),
                reason: err.to_string(),
            })
        })
        .collect()
}

/// Scans the files and folders `paths` (each its own root). Folders are walked without
/// following links to folders; a link to a file is scanned only when its target lies inside
/// one of the roots. Devices, FIFOs and sockets are skipped. `progress` is called with each
/// file before it is read.
pub fn scan_paths(
    rules: &YaraRules,
    paths: &[PathBuf],
    limits: ScanLimits,
    progress: &mut dyn FnMut(&Path),
) -> Result<ScanReport, ScanError> {
    let mut scanner = Scanner::new(rules, limits)?;
    let roots = canonical_roots(paths)?;
    let mut report = ScanReport::default();
    let mut stack: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(path) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(err) => {
                report.skip(&path, err.to_string());
                continue;
            }
        };
        // A root given as a link is the user's own choice and is followed; below a root, a
        // link is judged by where it points.
        let is_root = paths.contains(&path);
        let file_type = meta.file_type();
        let target = if file_type.is_symlink() {
            match std::fs::canonicalize(&path) {
                Ok(target) if is_root || roots.iter().any(|root| target.starts_with(root)) => {
                    target
                }
                Ok(_) => {
                    report.skip(&path, "a link out of the scan roots (not followed)".into());
                    continue;
                }
                Err(err) => {
                    report.skip(&path, format!("a broken link: {err}"));
                    continue;
                }
            }
        } else {
            path.clone()
        };
        let meta = match std::fs::metadata(&target) {
            Ok(meta) => meta,
            Err(err) => {
                report.skip(&path, err.to_string());
                continue;
            }
        };
        if meta.is_dir() {
            if file_type.is_symlink() && !is_root {
                report.skip(&path, "a link to a folder (not followed)".into());
                continue;
            }
            let mut entries: Vec<PathBuf> = match std::fs::read_dir(&target) {
                Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect(),
                Err(err) => {
                    report.skip(&path, err.to_string());
                    continue;
                }
            };
            entries.sort();
            stack.extend(entries.into_iter().rev());
            continue;
        }
        if !meta.is_file() {
            report.skip(&path, "not a regular file (device, FIFO or socket)".into());
            continue;
        }
        // The same file through a link and by its name is scanned once.
        let key = std::fs::canonicalize(&target).unwrap_or_else(|_| target.clone());
        if !seen.insert(key) {
            continue;
        }
        progress(&path);
        match scanner.scan_file(&target) {
            Ok(None) => report.scanned += 1,
            Ok(Some(mut found)) => {
                report.scanned += 1;
                found.path = path;
                report.matches.push(found);
            }
            Err(ScanError::Refused { reason, .. }) => report.skip(&path, reason),
            Err(ScanError::Timeout { .. }) => {
                report.skip(&path, "the scan ran out of its time budget".into())
            }
            Err(other) => return Err(other),
        }
    }
    Ok(report)
}

impl ScanReport {
    fn skip(&mut self, path: &Path, reason: String) {
        self.skipped.push(Skipped {
            path: path.to_path_buf(),
            reason,
        });
    }
}

/// Scans one file named by an event, only when it lies inside `roots` (canonical forms, from
/// [`canonical_roots`]): the check is made on the canonical path, which is also the path that
/// is opened, so a link cannot lead the read outside.
pub fn scan_file_within(
    rules: &YaraRules,
    path: &Path,
    roots: &[PathBuf],
    limits: ScanLimits,
) -> Result<Option<FileMatch>, ScanError> {
    let canonical = std::fs::canonicalize(path).map_err(|err| ScanError::Refused {
        path: path.to_path_buf(),
        reason: err.to_string(),
    })?;
    if !roots.iter().any(|root| canonical.starts_with(root)) {
        return Err(ScanError::OutsideRoots {
            path: path.to_path_buf(),
            roots: roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut scanner = Scanner::new(rules, limits)?;
    let found = scanner.scan_file(&canonical)?;
    Ok(found.map(|mut found| {
        found.path = path.to_path_buf();
        found
    }))
}

/// A scanner over the compiled rules, reused for every file of one scan. (Never made in a
/// build without the `yara` feature, where every scan stops at [`ScanError::Unsupported`].)
#[cfg_attr(not(feature = "yara"), allow(dead_code))]
struct Scanner<'r> {
    #[cfg(feature = "yara")]
    inner: yara_x::Scanner<'r>,
    #[cfg(not(feature = "yara"))]
    _rules: std::marker::PhantomData<&'r ()>,
    limits: ScanLimits,
}

#[cfg_attr(not(feature = "yara"), allow(dead_code))]
impl<'r> Scanner<'r> {
    #[cfg(not(feature = "yara"))]
    fn new(_rules: &'r YaraRules, _limits: ScanLimits) -> Result<Scanner<'r>, ScanError> {
        Err(ScanError::Unsupported)
    }

    #[cfg(feature = "yara")]
    fn new(rules: &'r YaraRules, limits: ScanLimits) -> Result<Scanner<'r>, ScanError> {
        let compiled = rules
            .compiled
            .as_deref()
            .filter(|r| r.iter().len() > 0)
            .ok_or(ScanError::NoRules)?;
        let mut inner = yara_x::Scanner::new(compiled);
        inner.set_timeout(limits.timeout);
        Ok(Scanner { inner, limits })
    }

    #[cfg(not(feature = "yara"))]
    fn scan_file(&mut self, _path: &Path) -> Result<Option<FileMatch>, ScanError> {
        let _ = self.limits;
        Err(ScanError::Unsupported)
    }

    #[cfg(feature = "yara")]
    fn scan_file(&mut self, path: &Path) -> Result<Option<FileMatch>, ScanError> {
        let data = read_regular(path, self.limits.max_bytes)?;
        let results = self.inner.scan(&data).map_err(|err| match err {
            yara_x::errors::ScanError::Timeout => ScanError::Timeout {
                path: path.to_path_buf(),
            },
            other => ScanError::Refused {
                path: path.to_path_buf(),
                reason: other.to_string(),
            },
        })?;
        let rules: Vec<RuleMatch> = results
            .matching_rules()
            .map(|rule| RuleMatch {
                rule: rule.identifier().to_string(),
                tags: rule.tags().map(|t| t.identifier().to_string()).collect(),
                meta: rule
                    .metadata()
                    .map(|(key, value)| (key.to_string(), meta_text(&value)))
                    .collect(),
            })
            .collect();
        if rules.is_empty() {
            return Ok(None);
        }
        Ok(Some(FileMatch {
            path: path.to_path_buf(),
            sha256: hex(&<sha2::Sha256 as sha2::Digest>::digest(&data)[..]),
            sha1: hex(&<sha1::Sha1 as sha1::Digest>::digest(&data)[..]),
            md5: hex(&<md5::Md5 as md5::Digest>::digest(&data)[..]),
            rules,
        }))
    }
}

#[cfg(feature = "yara")]
fn meta_text(value: &yara_x::MetaValue<'_>) -> String {
    match value {
        yara_x::MetaValue::Integer(n) => n.to_string(),
        yara_x::MetaValue::Float(n) => n.to_string(),
        yara_x::MetaValue::Bool(b) => b.to_string(),
        yara_x::MetaValue::String(s) => (*s).to_string(),
        yara_x::MetaValue::Bytes(bytes) => String::from_utf8_lossy(&bytes[..]).into_owned(),
    }
}

#[cfg(feature = "yara")]
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Reads a regular file, at most `max_bytes`: opened without following a link and without
/// blocking (a FIFO swapped in after the walk looked would otherwise hang the scan), then judged
/// on what was opened.
#[cfg(feature = "yara")]
fn read_regular(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ScanError> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let refused = |reason: String| ScanError::Refused {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| refused(err.to_string()))?;
    let meta = file.metadata().map_err(|err| refused(err.to_string()))?;
    if !meta.is_file() {
        return Err(refused(
            "not a regular file (device, FIFO or socket)".into(),
        ));
    }
    if meta.len() > max_bytes {
        return Err(refused(format!(
            "{} bytes, over the {max_bytes}-byte scan limit",
            meta.len()
        )));
    }
    let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|err| refused(err.to_string()))?;
    if data.len() as u64 > max_bytes {
        return Err(refused(format!(
            "grew past the {max_bytes}-byte scan limit while read"
        )));
    }
    Ok(data)
}
