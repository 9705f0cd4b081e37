//! `file.scan`: the content's YARA rules over the file an event names, for engines that run on
//! the host they protect.
//!
//! Only files whose real location (links resolved) lies inside `actions.file_scan.roots` are
//! read, and the path checked is the path opened. The scan runs off the async workers with its
//! own time budget; the matches are the step's outcome, so they reach the audit trail.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Action, ActionCall, ActionError, ActionFuture};
use crate::intel::yara::{self, ScanLimits, YaraHandle};

/// What `file.scan` reads with: the running content's rules (swapped on reload), the roots and
/// the bounds.
#[derive(Debug, Clone)]
pub struct FileScanSettings {
    pub rules: YaraHandle,
    /// Canonical forms are taken when the plugin is built; a root that does not exist refuses
    /// every path under it.
    pub roots: Vec<PathBuf>,
    pub limits: ScanLimits,
}

impl Default for FileScanSettings {
    fn default() -> FileScanSettings {
        FileScanSettings {
            rules: YaraHandle::default(),
            roots: Vec::new(),
            limits: ScanLimits {
                max_bytes: 64 * 1024 * 1024,
                timeout: std::time::Duration::from_secs(10),
            },
        }
    }
}

pub(super) struct Scan {
    settings: FileScanSettings,
}

impl Scan {
    pub(super) fn new(settings: &FileScanSettings) -> Scan {
        let mut settings = settings.clone();
        settings.roots = settings
            .roots
            .iter()
            .filter_map(|root| match std::fs::canonicalize(root) {
                Ok(root) => Some(root),
                Err(err) => {
                    tracing::warn!(
                        "`actions.file_scan.roots` entry `{}` cannot be used: {err}",
                        root.display()
                    );
                    None
                }
            })
            .collect();
        Scan { settings }
    }
}

impl Action for Scan {
    fn name(&self) -> &'static str {
        "file.scan"
    }

    fn execute<'a>(&'a self, call: &'a ActionCall) -> ActionFuture<'a> {
        Box::pin(async move {
            let path = PathBuf::from(call.text("path").unwrap_or_default());
            if !path.is_absolute() {
                return Err(ActionError::new(format!(
                    "`{}` is not an absolute path",
                    crate::text::inert(&path.display().to_string())
                )));
            }
            if self.settings.roots.is_empty() {
                return Err(ActionError::new(
                    "no scan roots are configured (`actions.file_scan.roots`)",
                ));
            }
            let rules = self.settings.rules.load_full();
            let roots = self.settings.roots.clone();
            let limits = self.settings.limits;
            let scanned = tokio::task::spawn_blocking(move || {
                yara::scan_file_within(&rules, &path, &roots, limits)
            })
            .await
            .map_err(|err| ActionError::new(format!("the scan stopped: {err}")))?;
            match scanned {
                Ok(Some(found)) => Ok(outcome(&found)),
                Ok(None) => Ok("no YARA rule matched".into()),
                Err(err) => Err(ActionError::new(err.to_string())),
            }
        })
    }
}

/// `matched rule_a, rule_b (sha256 …)`: the rules a later reader of the audit needs, and the
/// hash to look the file up by.
fn outcome(found: &yara::FileMatch) -> String {
    let rules: Vec<&str> = found.rules.iter().map(|m| m.rule.as_str()).collect();
    format!(
        "matched {} in {} (sha256 {})",
        rules.join(", "),
        crate::text::inert(&display(&found.path)),
        found.sha256
    )
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// The handle type is shared with the engine, which swaps in the rules of reloaded content.
pub fn handle(rules: yara::YaraRules) -> YaraHandle {
    Arc::new(arc_swap::ArcSwap::from_pointee(rules))
}
